"""A finished extraction written the way the extraction job writes one: SAE, dataset and
extraction rows, one ``features`` row per feature, and examples as Parquet buckets under
the artifact store (saeray.examples layout), for labeling tests and the benchmark.

Feature ``i`` fires on token ``VOCAB[i % len(VOCAB)]`` (its "meaning"), at the peak of
each of its windows, and weakly on the token two before; features in ``dead`` never fire
and have no examples; features in ``without_examples`` have a row but no examples.
Built with numpy, so 44,000 features take seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sqlalchemy import insert
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.db.tables import SAE, Dataset, ExtractionJob, Feature
from saeray.examples import EXAMPLE_SCHEMA, examples_dir, write_examples

VOCAB = [
    " the", " cat", " sat", " on", " mat", ",", ".", " and", " 42", " 1999", " Paris",
    " London", " run", " running", " quickly", "(", ")", " is", " was", " of", "\\n", " {",
    " }", " def", " return", " Alice", " Bob", " blue", " green", " seven",
]  # fmt: skip


def firing_token(feature_index: int) -> str:
    return VOCAB[feature_index % len(VOCAB)]


def make_extraction(
    session: Session,
    store: ArtifactStore,
    *,
    features: int = 40,
    dead: tuple[int, ...] = (),
    without_examples: tuple[int, ...] = (),
    top: int = 6,
    quantile: int = 3,
    window: int = 16,
    seed: int = 0,
) -> ExtractionJob:
    sae = SAE(
        name="fixture-sae",
        source="local",
        format="saelens",
        architecture="standard",
        path="/nonexistent/fixture",
        d_in=8,
        d_sae=features,
    )
    dataset = Dataset(name="fixture-corpus", spec="builtin:tiny")
    session.add_all([sae, dataset])
    session.flush()
    extraction = ExtractionJob(
        sae_id=sae.id, dataset_id=dataset.id, status="completed", progress=1.0
    )
    session.add(extraction)
    session.flush()
    rng = np.random.default_rng(seed)
    max_activation = rng.uniform(2.0, 10.0, size=features)
    session.execute(
        insert(Feature.__table__),  # type: ignore[attr-defined]
        [
            {
                "extraction_id": extraction.id,
                "index": i,
                "name": f"feature {i}",
                "frequency": 0.0 if i in dead else 0.001 * (1 + i % 7),
                "firing_count": 0 if i in dead else 100 + i,
                "max_activation": 0.0 if i in dead else float(max_activation[i]),
                "mean_activation": 0.0 if i in dead else float(max_activation[i] / 4),
                "std_activation": 0.0 if i in dead else float(max_activation[i] / 8),
                "is_dead": i in dead,
                "top_tokens": {}
                if i in dead
                else {"tokens": [firing_token(i)], "values": [float(max_activation[i])]},
                "histogram": {},
                "logit_effects": {},
            }
            for i in range(features)
        ],
    )
    session.commit()
    live = np.array([i for i in range(features) if i not in dead and i not in without_examples])
    if len(live):
        write_examples(
            store,
            examples_dir(extraction.id),
            _examples(live, max_activation, top, quantile, window, rng),
        )
    session.refresh(extraction)
    return extraction


def _examples(
    live: np.ndarray,
    max_activation: np.ndarray,
    top: int,
    quantile: int,
    window: int,
    rng: np.random.Generator,
) -> pa.Table:
    per_feature = top + quantile
    rows = len(live) * per_feature
    feature = np.repeat(live, per_feature)
    is_top = np.tile(np.arange(per_feature) < top, len(live))
    rank = np.tile(np.r_[np.arange(top), np.arange(quantile)], len(live))
    strength = np.where(is_top, 1.0 - 0.05 * rank, 0.5 - 0.1 * rank)
    peak_value = (max_activation[feature] * strength).astype(np.float32)
    token_ids = rng.integers(0, len(VOCAB), size=(rows, window))
    peak = rng.integers(window // 2, window, size=rows)
    token_ids[np.arange(rows), peak] = feature % len(VOCAB)
    activations = np.zeros((rows, window), dtype=np.float32)
    activations[np.arange(rows), peak] = peak_value
    activations[np.arange(rows), peak - 2] = peak_value * 0.3
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * window)
    tokens = np.asarray(VOCAB, dtype=object)[token_ids.ravel()]
    return pa.table(
        {
            "feature_index": pa.array(feature, pa.int32()),
            "kind": pa.array(np.where(is_top, "top", "quantile")),
            "rank": pa.array(rank, pa.int32()),
            "max_activation": pa.array(peak_value),
            "doc_index": pa.array(np.arange(rows), pa.int64()),
            "window_index": pa.array(np.zeros(rows), pa.int64()),
            "tokens": pa.ListArray.from_arrays(offsets, pa.array(tokens, pa.string())),
            "token_ids": pa.ListArray.from_arrays(offsets, pa.array(token_ids.ravel(), pa.int32())),
            "activations": pa.ListArray.from_arrays(offsets, pa.array(activations.ravel())),
        },
        schema=EXAMPLE_SCHEMA,
    )
