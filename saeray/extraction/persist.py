"""Write an extraction's results: examples to Parquet, then every feature row in one go.

All or nothing: examples go to a staging folder, which is moved into place only when every
bucket is written; feature rows are inserted in the same transaction that marks the job
completed. A job that fails or is cancelled on the way leaves no features and no examples.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.db.tables import ExtractionJob, Feature
from saeray.examples import BUCKET_SIZE, EXAMPLE_SCHEMA, examples_dir, write_examples
from saeray.extraction.encoder_actor import split_positions
from saeray.extraction.logit_effects import LogitEffects
from saeray.extraction.partials import HISTOGRAM_EDGES, ExampleSet, FeatureResults
from saeray.extraction.tokens import TokenCounts
from saeray.lifecycle import JobStatus, transition


def feature_name(index: int) -> str:
    return f"feature_{index:05d}"


def write_examples_staged(
    store: ArtifactStore, extraction_id: str, results: FeatureResults, vocabulary: np.ndarray
) -> str:
    """Write every example into ``extractions/<id>/examples`` via a staging folder; returns
    that folder. One bucket of features is gathered at a time, so memory stays small."""
    staging = f"extractions/{extraction_id}/staging-{uuid.uuid4().hex[:8]}"
    final = examples_dir(extraction_id)
    vocabulary_array = pa.array(vocabulary, pa.string())
    d_sae = len(results.firing_count)
    try:
        for first in range(0, d_sae, BUCKET_SIZE):
            bucket = (first, first + BUCKET_SIZE)
            table = pa.concat_tables(
                [
                    _examples_table("top", results.top, bucket, vocabulary_array),
                    _examples_table("quantile", results.quantile, bucket, vocabulary_array),
                ]
            )
            if len(table):
                write_examples(store, staging, table)
        store.delete_dir(final)  # a leftover of an earlier attempt of this job
        if store.exists(staging):
            store.move_dir(staging, final)
    except BaseException:
        store.delete_dir(staging)
        raise
    return final


def _examples_table(
    kind: str, examples: ExampleSet, bucket: tuple[int, int], vocabulary: pa.Array
) -> pa.Table:
    chosen = examples.features(*bucket)
    part, tokens, lengths = chosen.examples, chosen.tokens, chosen.lengths
    inside = np.arange(tokens.shape[1])[None, :] < lengths[:, None]  # drop the padding
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    token_ids = pa.array(tokens[inside].astype(np.int32))
    doc_index, window_index = split_positions(part.position)
    return pa.table(
        {
            "feature_index": pa.array(part.group.astype(np.int32)),
            "kind": pa.array([kind] * len(part), pa.string()),
            "rank": pa.array(chosen.ranks.astype(np.int32)),
            "max_activation": pa.array(part.value.astype(np.float32)),
            "doc_index": pa.array(doc_index),
            "window_index": pa.array(window_index),
            "tokens": pa.ListArray.from_arrays(offsets, pc.take(vocabulary, token_ids)),
            "token_ids": pa.ListArray.from_arrays(offsets, token_ids),
            "activations": pa.ListArray.from_arrays(
                offsets, pa.array(chosen.rows[inside].astype(np.float32))
            ),
        },
        schema=EXAMPLE_SCHEMA,
    )


def save_features(
    session: Session,
    job: ExtractionJob,
    results: FeatureResults,
    *,
    vocabulary: np.ndarray,
    logits: LogitEffects | None,
    top_tokens: int,
    statistics: dict[str, Any],
    artifact_uri: str,
) -> None:
    """Insert every feature row and mark the job completed, in one transaction."""
    rows = feature_rows(job.id, results, vocabulary, logits, top_tokens)
    try:
        if rows:
            session.execute(insert(Feature), rows)
        job.statistics = statistics
        job.artifact_uri = artifact_uri
        transition(session, job, JobStatus.COMPLETED)  # commits the rows with the status
    except BaseException:
        session.rollback()
        raise


def feature_rows(
    extraction_id: str,
    results: FeatureResults,
    vocabulary: np.ndarray,
    logits: LogitEffects | None,
    top_tokens: int,
) -> list[dict[str, Any]]:
    by_count = _per_feature(results.top_tokens.ranked(top_tokens, by="count")[0], vocabulary)
    by_mean = _per_feature(results.top_tokens.ranked(top_tokens, by="mean")[0], vocabulary)
    rows = []
    for index in range(len(results.firing_count)):  # building rows, not the hot path
        rows.append(
            {
                "extraction_id": extraction_id,
                "index": index,
                "name": feature_name(index),
                "frequency": float(results.frequency[index]),
                "firing_count": int(results.firing_count[index]),
                "max_activation": float(results.max_activation[index]),
                "mean_activation": float(results.mean_activation[index]),
                "std_activation": float(results.std_activation[index]),
                "is_dead": bool(results.is_dead[index]),
                "top_tokens": {
                    "by_count": by_count.get(index, []),
                    "by_mean": by_mean.get(index, []),
                },
                "histogram": _histogram(results.histogram[index]),
                "logit_effects": _logit_effects(logits, index, vocabulary),
                "active_label_id": None,
            }
        )
    return rows


def _per_feature(counts: TokenCounts, vocabulary: np.ndarray) -> dict[int, list[dict]]:
    features, starts = np.unique(counts.feature, return_index=True)
    ends = np.append(starts[1:], len(counts))
    mean = counts.mean
    return {
        int(f): [
            {
                "token": str(vocabulary[counts.token[i]]),
                "token_id": int(counts.token[i]),
                "count": int(counts.count[i]),
                "mean_activation": float(mean[i]),
            }
            for i in range(start, end)
        ]
        for f, start, end in zip(features, starts, ends, strict=True)
    }


def _histogram(counts: np.ndarray) -> dict[str, list]:
    """The bins from the first to the last non-empty one; an open last edge is null."""
    filled = np.flatnonzero(counts)
    if not len(filled):
        return {"edges": [], "counts": []}
    lo, hi = int(filled[0]), int(filled[-1]) + 1
    edges = [float(edge) if np.isfinite(edge) else None for edge in HISTOGRAM_EDGES[lo : hi + 1]]
    return {"edges": edges, "counts": counts[lo:hi].tolist()}


def _logit_effects(logits: LogitEffects | None, index: int, vocabulary: np.ndarray) -> dict:
    if logits is None:
        return {}

    def entries(ids: np.ndarray, values: np.ndarray) -> list[dict]:
        return [
            {"token": str(vocabulary[i]), "token_id": int(i), "value": float(v)}
            for i, v in zip(ids, values, strict=True)
        ]

    return {
        "promoted": entries(logits.promoted_ids[index], logits.promoted_values[index]),
        "suppressed": entries(logits.suppressed_ids[index], logits.suppressed_values[index]),
    }


def discard(store: ArtifactStore, extraction_id: str) -> None:
    """Remove whatever a failed or cancelled job of this id left in the artifact store."""
    store.delete_dir(f"extractions/{extraction_id}")
