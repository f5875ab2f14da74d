"""The artifact store: bulky files (Parquet examples, SAE weights) under ``SAERAY_ARTIFACTS``.

A local folder or any URI ``pyarrow.fs`` understands (``s3://bucket/prefix``, ``gs://...``),
so that on a cluster every node writes to and reads from the same place.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from saeray.errors import NotFoundError
from saeray.settings import get_settings


class ArtifactStore:
    def __init__(self, uri: str | None = None) -> None:
        uri = uri or get_settings().artifacts
        self.is_local = "://" not in uri  # a folder on this machine, not a store URI
        if self.is_local:
            Path(uri).mkdir(parents=True, exist_ok=True)
            uri = str(Path(uri).resolve())
        self.uri = uri
        self.fs, self.root = pafs.FileSystem.from_uri(uri)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def address(self, relpath: str) -> str:
        """Where ``relpath`` is for any node: a local path, or a URI in the store."""
        return f"{self.uri.rstrip('/')}/{relpath}"

    def write_table(self, relpath: str, table: pa.Table) -> None:
        """Write a Parquet file atomically where the filesystem allows (write, then move)."""
        final = self.path(relpath)
        self.fs.create_dir(posixpath.dirname(final), recursive=True)
        temporary = final + ".tmp"
        pq.write_table(table, temporary, filesystem=self.fs, compression="zstd")
        self.fs.move(temporary, final)

    def read_table(self, relpath: str, *, filters: list | None = None) -> pa.Table:
        full = self.path(relpath)
        if self.fs.get_file_info(full).type == pafs.FileType.NotFound:
            raise NotFoundError(f"artifact {full} is missing from {self.uri}")
        return pq.read_table(full, filesystem=self.fs, filters=filters)

    def exists(self, relpath: str) -> bool:
        return self.fs.get_file_info(self.path(relpath)).type != pafs.FileType.NotFound

    def delete_dir(self, relpath: str) -> None:
        full = self.path(relpath)
        if self.fs.get_file_info(full).type != pafs.FileType.NotFound:
            self.fs.delete_dir(full)

    def move_dir(self, source: str, target: str) -> None:
        self.fs.move(self.path(source), self.path(target))
