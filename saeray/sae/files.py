"""Where an SAE's files come from: a local folder or a folder in a Hugging Face repo.

Formats read files by name through ``SAEFiles``, so one loader serves both sources;
a hub folder downloads (or, offline, finds in the cache) only the files asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from saeray import paths
from saeray.errors import NotFoundError

# How deep below a folder to look for SAE folders when telling the user which to pick.
SEARCH_DEPTH = 4


class SAEFiles(Protocol):
    """A folder of SAE files, wherever it lives."""

    offline: bool  # True when only cached copies of remote files can be seen

    @property
    def label(self) -> str:
        """How to name the folder in messages (a path or an ``hf://`` address)."""
        ...

    def find(self, name: str) -> Path | None:
        """A local path to the file ``name`` (relative to the folder), or None if absent."""
        ...

    def sae_folders_below(self, markers: Iterable[str]) -> list[str]:
        """Subfolders (relative paths) holding any file named in ``markers``."""
        ...


def require(files: SAEFiles, name: str, what: str) -> Path:
    """A file the format cannot do without; a clear error naming it when absent."""
    path = files.find(name)
    if path is None:
        raise NotFoundError(
            f"{files.label} has no {name} ({what}); the SAE is incomplete: copy or download "
            "the whole SAE folder"
        )
    return path


class LocalFolder:
    """A folder on this machine."""

    offline = False

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def label(self) -> str:
        return str(self.path)

    def find(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None

    def sae_folders_below(self, markers: Iterable[str]) -> list[str]:
        return folders_holding(self.path, set(markers))


def folders_holding(root: Path, markers: set[str]) -> list[str]:
    """Relative paths of folders under ``root`` (not root itself) holding a marker file."""
    found: set[str] = set()
    for directory, subdirectories, filenames in os.walk(root):
        relative = Path(directory).relative_to(root)
        if len(relative.parts) >= SEARCH_DEPTH:
            subdirectories.clear()
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        if relative.parts and markers.intersection(filenames):
            found.add(relative.as_posix())
    return sorted(found)


def folder_of_file(path: str, known_files: Iterable[str]) -> str | None:
    """The SAE folder of a path naming one of its files (``x/checkpoints/final.safetensors``
    names ``x``), or None if the path names no known file."""
    for name in sorted(known_files, key=len, reverse=True):
        if path == name:
            return ""
        if path.endswith("/" + name):
            return path[: -len(name) - 1]
    return None


def local_folder(source: Path, known_files: Iterable[str]) -> LocalFolder:
    """The SAE folder for a local path: the folder itself, or the folder holding a file."""
    if not paths.exists(source):
        raise NotFoundError(
            f"no file or folder at {source}; for a Hugging Face repo use "
            "hf://org/repo/path/inside or pass path_in_repo="
        )
    if paths.is_dir(source):
        return LocalFolder(source)
    folder = folder_of_file(source.absolute().as_posix(), known_files)
    return LocalFolder(Path(folder) if folder else source.absolute().parent)
