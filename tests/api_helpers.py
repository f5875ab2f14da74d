"""Shared by the API tests: an in-memory job backend and a seeded extraction.

The backend stands in for Ray only where Ray is not what a test is about (routes, status
merging, cancel); the Serve test runs real Ray jobs. Seeding writes straight into the
schema and the Parquet example layout, as an extraction and a labeling job would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa
from fastapi.testclient import TestClient
from sqlmodel import Session

from deployments.app import create_app
from saeray.artifacts import ArtifactStore
from saeray.db.engine import open_engine
from saeray.db.tables import (
    SAE,
    Dataset,
    ExtractionJob,
    Feature,
    FeatureLabel,
    LabelingJob,
    LabelSource,
    utcnow,
)
from saeray.examples import examples_dir, write_examples
from saeray.settings import get_settings
from saeray.submit import DriverState


@dataclass
class RecordingBackend:
    """Records submissions and stops; reports whatever state a test sets per job."""

    submitted: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    states: dict[str, DriverState] = field(default_factory=dict)

    def submit(self, job_id: str, entrypoint: str, env_vars: dict[str, str]) -> None:
        self.submitted[job_id] = (entrypoint, env_vars)
        self.states[job_id] = DriverState("PENDING")

    def stop(self, job_id: str) -> None:
        self.stopped.append(job_id)

    def state(self, job_id: str) -> DriverState | None:
        return self.states.get(job_id)


def api_client(backend: RecordingBackend | None = None) -> TestClient:
    """A test client of the app over the environment's database (the database_url
    fixture sets it), raising nothing: errors come back as responses."""
    app = create_app(get_settings(), backend or RecordingBackend())
    return TestClient(app, raise_server_exceptions=False)


# Feature index -> (frequency, max activation, is dead, top tokens).
FEATURES = {
    0: (0.30, 2.0, False, [(" the", 40), (" a", 12)]),
    1: (0.05, 9.5, False, [(" cat", 7), (" dog", 5)]),
    2: (0.00, 0.0, True, []),
    3: (0.12, 4.0, False, [("def", 9), ("class", 4)]),
    4: (0.20, 1.0, False, [(" 100%", 3)]),
}


@dataclass(frozen=True)
class Seeded:
    sae_id: str
    dataset_id: str
    extraction_id: str
    labeling_job_id: str
    feature_ids: dict[int, int]  # index -> row id
    label_ids: dict[int, int]  # index -> the active label's id


def seed_extraction(
    session: Session, *, sae_source: str = "local", examples: bool = True
) -> Seeded:
    """A completed extraction of five features: 0 labeled "articles" (its active label,
    after an older one), 1 "animals" flagged, 3 "python keywords" by a user, 2 dead,
    4 unlabeled. Feature 1's examples are in Parquet."""
    sae = SAE(
        name="tiny-sae",
        source=sae_source,
        format="saelens",
        architecture="relu",
        path="/nowhere",
        d_in=8,
        d_sae=len(FEATURES),
    )
    dataset = Dataset(name="tiny", spec="builtin:tiny")
    session.add_all([sae, dataset])
    session.flush()
    extraction = ExtractionJob(
        sae_id=sae.id,
        dataset_id=dataset.id,
        status="completed",
        progress=1.0,
        tokens_processed=1000,
        finished_at=utcnow(),
    )
    session.add(extraction)
    session.flush()
    features = {}
    for index, (frequency, top, dead, tokens) in FEATURES.items():
        features[index] = Feature(
            extraction_id=extraction.id,
            index=index,
            name=f"feature_{index:05d}",
            frequency=frequency,
            firing_count=int(frequency * 1000),
            max_activation=top,
            mean_activation=top / 2,
            std_activation=top / 4,
            is_dead=dead,
            # The layout saeray.extraction.persist writes.
            top_tokens={
                "by_count": [
                    {"token": token, "token_id": rank, "count": count, "mean": top / 2}
                    for rank, (token, count) in enumerate(tokens)
                ],
                "by_mean": [],
            },
            histogram={"edges": [0.001, 1.0, None], "counts": [3, 1]},
            logit_effects={
                "positive": [{"token": " meow", "token_id": 7, "value": 1.5}],
                "negative": [{"token": " bark", "token_id": 8, "value": -1.2}],
            },
        )
    session.add_all(features.values())
    session.flush()
    labeling = LabelingJob(
        extraction_id=extraction.id,
        provider="offline",
        model="top-tokens",
        status="completed",
        progress=1.0,
        created_at=utcnow() - timedelta(minutes=5),
    )
    session.add(labeling)
    session.flush()

    def label(index: int, text: str, **fields: object) -> FeatureLabel:
        row = FeatureLabel(feature_id=features[index].id, label=text, **fields)
        session.add(row)
        session.flush()
        return row

    label(
        0,
        "old article label",
        label_source=LabelSource.USER,
        created_at=utcnow() - timedelta(minutes=10),
    )
    labels = {
        0: label(0, "articles", category="grammar", labeling_job_id=labeling.id),
        1: label(1, "animals", category="semantic", labeling_job_id=labeling.id, flagged=True),
        3: label(3, "python keywords", category="code", label_source=LabelSource.USER),
    }
    for index, row in labels.items():
        features[index].active_label_id = row.id
        session.add(features[index])
    session.commit()
    if examples:
        write_examples(ArtifactStore(), examples_dir(extraction.id), example_table(1))
    return Seeded(
        sae_id=sae.id,
        dataset_id=dataset.id,
        extraction_id=extraction.id,
        labeling_job_id=labeling.id,
        feature_ids={index: feature.id for index, feature in features.items()},
        label_ids={index: row.id for index, row in labels.items()},
    )


def example_table(feature_index: int) -> pa.Table:
    tokens = [["The", " cat", " sat"], ["A", " dog", " ran"]]
    activations = [[0.0, 9.5, 0.25], [0.0, 3.0, 0.0]]
    return pa.table(
        {
            "feature_index": [feature_index, feature_index],
            "kind": ["top", "top"],
            "rank": [0, 1],
            "max_activation": [9.5, 3.0],
            "doc_index": [0, 4],
            "window_index": [0, 7],
            "tokens": tokens,
            "token_ids": [[1, 2, 3], [4, 5, 6]],
            "activations": activations,
        }
    )


def seed(database_url: str, **kwargs: object) -> Seeded:
    with Session(open_engine(database_url), expire_on_commit=False) as session:
        return seed_extraction(session, **kwargs)  # type: ignore[arg-type]
