"""Max-activating and quantile examples of features, stored as Parquet in the artifact store.

Layout: ``extractions/<extraction id>/examples/bucket-<n>.parquet`` where bucket ``n`` holds
features ``n*BUCKET_SIZE .. (n+1)*BUCKET_SIZE-1``, rows sorted by feature index, so one
feature's examples are read from one small file without scanning the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from saeray.artifacts import ArtifactStore

BUCKET_SIZE = 256

EXAMPLE_SCHEMA = pa.schema(
    [
        ("feature_index", pa.int32()),
        ("kind", pa.string()),  # "top" (max-activating) or "quantile"
        ("rank", pa.int32()),  # 0 = strongest among its kind; for quantile, its bin
        ("max_activation", pa.float32()),  # the feature's largest activation in the window
        ("doc_index", pa.int64()),
        ("window_index", pa.int64()),
        ("tokens", pa.list_(pa.string())),  # decoded tokens, whitespace escaped
        ("token_ids", pa.list_(pa.int32())),
        ("activations", pa.list_(pa.float32())),  # the feature on every token of the window
    ]
)


@dataclass(frozen=True)
class Example:
    feature_index: int
    kind: str
    rank: int
    max_activation: float
    doc_index: int
    window_index: int
    tokens: list[str]
    token_ids: list[int]
    activations: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def examples_dir(extraction_id: str) -> str:
    return f"extractions/{extraction_id}/examples"


def bucket_path(extraction_id: str, feature_index: int) -> str:
    return f"{examples_dir(extraction_id)}/bucket-{feature_index // BUCKET_SIZE:05d}.parquet"


def write_examples(store: ArtifactStore, directory: str, table: pa.Table) -> None:
    """Write every example in ``table`` (EXAMPLE_SCHEMA) into its bucket file under
    ``directory``. Callers write to a staging directory and move it in place when done."""
    table = table.cast(EXAMPLE_SCHEMA).sort_by(
        [("feature_index", "ascending"), ("kind", "descending"), ("rank", "ascending")]
    )
    buckets = pc.divide(table["feature_index"], pa.scalar(BUCKET_SIZE, pa.int32()))
    for bucket in pc.unique(buckets).to_pylist():
        part = table.filter(pc.equal(buckets, bucket))
        store.write_table(f"{directory}/bucket-{bucket:05d}.parquet", part)


def read_examples(store: ArtifactStore, extraction_id: str, feature_index: int) -> list[Example]:
    """The examples of one feature: top examples first, then quantile examples."""
    path = bucket_path(extraction_id, feature_index)
    if not store.exists(path):
        return []
    table = store.read_table(path, filters=[("feature_index", "=", feature_index)])
    return [Example(**row) for row in table.to_pylist()]
