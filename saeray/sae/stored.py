"""SAE folders in a shared store: any URI ``pyarrow.fs`` understands (``s3://``, ``gs://``,
``file://``), the same kind of place as the artifact store.

Loading one copies the folder into this machine's cache first (``$SAERAY_HOME/cache/saes``),
so every node of a cluster can load an SAE that a training job uploaded, wherever that job
ran. A copy is keyed by the folder and its files' sizes and times: a folder replaced in the
store is copied anew, an unchanged one is copied once per machine.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae.files import LocalFolder
from saeray.sae.hub import HF_SCHEME
from saeray.settings import get_settings


def is_store_uri(source: str) -> bool:
    """A ``scheme://`` address that is not a Hugging Face one."""
    return "://" in source and not source.startswith(HF_SCHEME)


class StoredFolder(LocalFolder):
    """A folder in a store, read through its copy on this machine."""

    def __init__(self, uri: str) -> None:
        super().__init__(cached_copy(uri))
        self.uri = uri

    @property
    def label(self) -> str:
        return self.uri


def cached_copy(uri: str) -> Path:
    """This machine's copy of the folder at ``uri`` (or of the folder holding the file)."""
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise InvalidInputError(
            f"{uri} is not an address saeray can read SAE files from ({error}). Fix: use a "
            "local path, hf://org/repo/path, or a storage URI such as s3://bucket/folder"
        ) from error
    kind = fs.get_file_info(root).type
    if kind == pafs.FileType.NotFound:
        raise NotFoundError(f"no file or folder at {uri}. Fix: check the address")
    if kind == pafs.FileType.File:
        root = root.rsplit("/", 1)[0]
    files = sorted(
        (info.path, info.size, info.mtime_ns)
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if info.type == pafs.FileType.File
    )
    key = hashlib.sha256(repr((fs.type_name, root, files)).encode()).hexdigest()[:24]
    target = get_settings().home / "cache" / "saes" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    pafs.copy_files(
        root, str(staging), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    try:
        staging.rename(target)
    except OSError:  # another process on this machine finished the same copy first
        shutil.rmtree(staging, ignore_errors=True)
    return target
