"""SAE folders inside Hugging Face repos: ``hf://`` addresses, cached downloads, offline use.

Files come through ``huggingface_hub`` into its cache. With ``HF_HUB_OFFLINE=1`` only
the cache is read (``local_files_only``), and a repo that is not cached is a clear
error, never a hang. ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and ``HF_ENDPOINT`` are read at call
time, so a job (or a test) can set them after ``huggingface_hub`` is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name

from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae.files import folders_holding

HF_SCHEME = "hf://"
_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubRef:
    """A folder in a Hugging Face model repo, at a revision (None: the default branch)."""

    repo_id: str
    path_in_repo: str = ""
    revision: str | None = None

    @property
    def label(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        path = f"/{self.path_in_repo}" if self.path_in_repo else ""
        return f"{HF_SCHEME}{self.repo_id}{revision}{path}"

    def joined(self, name: str) -> str:
        return (PurePosixPath(self.path_in_repo) / name).as_posix()

    def child(self, name: str) -> HubRef:
        return replace(self, path_in_repo=self.joined(name))


def parse_hf_uri(uri: str) -> HubRef:
    """``hf://org/repo[@revision][/path/inside]`` as a ``HubRef``."""
    parts = [part for part in uri.removeprefix(HF_SCHEME).split("/") if part]
    if len(parts) < 2:
        raise InvalidInputError(
            f"{uri!r} is not a Hugging Face address; write hf://org/repo/path/inside"
        )
    name, _, revision = parts[1].partition("@")
    return HubRef(f"{parts[0]}/{name}", "/".join(parts[2:]), revision or None)


def make_ref(repo_id: str, path_in_repo: str | None, revision: str | None) -> HubRef:
    """A ``HubRef`` from an ``hf://`` address or a bare repo id, plus the keyword parts."""
    ref = parse_hf_uri(repo_id) if repo_id.startswith(HF_SCHEME) else HubRef(repo_id.strip("/"))
    if ref.repo_id.count("/") != 1:
        raise InvalidInputError(f"{repo_id!r} is not a Hugging Face repo id; write org/repo")
    if path_in_repo:
        ref = ref.child(path_in_repo.strip("/"))
    if revision:
        if ref.revision and ref.revision != revision:
            raise InvalidInputError(
                f"{repo_id!r} names revision {ref.revision!r} but revision={revision!r} was passed"
            )
        ref = replace(ref, revision=revision)
    return ref


def hub_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE")
    if flag is None:
        return bool(constants.HF_HUB_OFFLINE)
    return flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def hub_endpoint() -> str | None:
    """``HF_ENDPOINT`` (a mirror, or a test server); None for the library's default."""
    return os.environ.get("HF_ENDPOINT") or None


class HubFolder:
    """A folder in a Hugging Face repo, fetched file by file into the hub cache."""

    def __init__(self, ref: HubRef) -> None:
        self.ref = ref
        self.offline = hub_offline()
        self.cache_dir = hub_cache_dir()
        self.endpoint = hub_endpoint()
        self._snapshot = self._cached_snapshot() if self.offline else None
        self._found: dict[str, Path | None] = {}  # formats probe the same files in turn
        if self.offline and self._snapshot is None:
            revision = self.ref.revision or "main"
            include = f" --include '{ref.path_in_repo}/*'" if ref.path_in_repo else ""
            raise NotFoundError(
                f"{ref.label} (revision {revision}) is not in the Hugging Face cache at "
                f"{self.cache_dir}, and HF_HUB_OFFLINE is set so it cannot be downloaded. "
                f"Download it while online (hf download {ref.repo_id}{include}) or unset "
                "HF_HUB_OFFLINE"
            )

    @property
    def label(self) -> str:
        return self.ref.label

    def _cached_snapshot(self) -> Path | None:
        """The cached snapshot folder of the revision, if the cache has one."""
        storage = self.cache_dir / repo_folder_name(repo_id=self.ref.repo_id, repo_type="model")
        revision = self.ref.revision or constants.DEFAULT_REVISION
        commit = revision
        if not _COMMIT_HASH.fullmatch(revision):
            ref_file = storage / "refs" / revision
            if not ref_file.is_file():
                return None
            commit = ref_file.read_text().strip()
        snapshot = storage / "snapshots" / commit
        return snapshot if snapshot.is_dir() else None

    def find(self, name: str) -> Path | None:
        if name not in self._found:
            self._found[name] = self._fetch(name)
        return self._found[name]

    def _fetch(self, name: str) -> Path | None:
        filename = self.ref.joined(name)
        try:
            return Path(
                hf_hub_download(
                    self.ref.repo_id,
                    filename,
                    revision=self.ref.revision,
                    cache_dir=self.cache_dir,
                    local_files_only=self.offline,
                    endpoint=self.endpoint,
                )
            )
        except RemoteEntryNotFoundError:
            return None
        except LocalEntryNotFoundError as error:
            if self.offline:  # not in the cached snapshot: absent as far as we can see
                return None
            raise NotFoundError(
                f"could not reach the Hugging Face Hub for {self.label} (fetching {name}), and "
                "it is not cached; check the network, or set HF_HUB_OFFLINE=1 to use only the cache"
            ) from error
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise _missing_repo(self.ref, error) from error

    def sae_folders_below(self, markers: Iterable[str]) -> list[str]:
        markers = set(markers)
        if self.offline:
            assert self._snapshot is not None  # checked in __init__
            return folders_holding(self._snapshot / self.ref.path_in_repo, markers)
        prefix = PurePosixPath(self.ref.path_in_repo)
        try:
            entries = HfApi(endpoint=self.endpoint).list_repo_tree(
                self.ref.repo_id,
                path_in_repo=self.ref.path_in_repo or None,
                revision=self.ref.revision,
                recursive=True,
            )
            paths = [PurePosixPath(entry.path) for entry in entries]
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise _missing_repo(self.ref, error) from error
        except Exception:  # the listing only refines an error message; never fail on it
            return []
        return sorted(
            {
                path.parent.relative_to(prefix).as_posix()
                for path in paths
                if path.name in markers and path.parent != prefix
            }
        )


def _missing_repo(ref: HubRef, error: Exception) -> NotFoundError:
    return NotFoundError(
        f"{ref.label}: the repo or revision does not exist, or it is private or gated "
        f"({type(error).__name__}); check the id, or log in (hf auth login) if you have access"
    )
