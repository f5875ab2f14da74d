"""Training jobs end to end on real Ray: a tiny GPT-2 saved to disk, a JSONL corpus, the Ray
Data activation stream, the job row, the saved and registered SAE; cancellation by SIGTERM
and failure with a message."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import transformers as tf
from sqlmodel import Session, select

from jobs.train import main as train_main
from saeray.db.engine import open_engine
from saeray.db.tables import SAE, Dataset, TrainingJob
from saeray.errors import InvalidInputError, NotFoundError
from saeray.training.config import TrainingConfig
from saeray.training.job import create_training_job, run_training_job
from saeray.training.stream import heldout_mask
from tests.lm_fixtures import WORDS, tiny_tokenizer

HOOK = "blocks.1.hook_resid_post"
SETTINGS = {
    "d_sae": 64,
    "k": 4,
    "tokens": 6000,
    "lr": 1e-2,
    "batch_size": 128,
    "context_length": 32,
    "reuse": 4.0,
    "buffer_tokens": 2048,
    "heldout_tokens": 1000,
    "windows_per_batch": 16,
}


@dataclass(frozen=True)
class Assets:
    model: Path
    corpus: Path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    """A tiny GPT-2 (d = 32, two blocks) with its tokenizer, and a JSONL corpus."""
    root = tmp_path_factory.mktemp("train-assets")
    tokenizer = tiny_tokenizer("gpt2")
    torch.manual_seed(0)
    config = tf.GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    tf.GPT2LMHeadModel(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rng = random.Random(0)
    lines = [
        json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 80)))})
        for _ in range(400)
    ]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return Assets(root / "model", root / "corpus.jsonl")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def new_job(engine, assets: Assets, corpus: Path | None = None, **settings) -> str:
    with Session(engine, expire_on_commit=False) as session:
        dataset = Dataset(name="corpus", spec=str(corpus or assets.corpus))
        session.add(dataset)
        session.commit()
        job = create_training_job(
            session,
            model=assets.model,
            hook=HOOK,
            dataset=dataset.id,
            config={**SETTINGS, **settings},
            name="tiny-topk",
        )
        return job.id


def heldout_activations(assets: Assets, config: TrainingConfig) -> torch.Tensor:
    """Every held-out token's activation, by a plain in-process forward pass."""
    from saeray.corpus import WindowConfig, iter_windows
    from saeray.lm import ActivationReader, load_model, special_token_ids, token_mask

    loaded = load_model(assets.model, device="cpu")
    reader = ActivationReader(loaded, HOOK)
    rows = []
    windows = WindowConfig(context_length=config.context_length)
    for batch in iter_windows(str(assets.corpus), loaded.tokenizer, windows):
        held = heldout_mask(batch.doc_index, batch.window_index, config.heldout_fraction, 0)
        ids, attention = batch.input_ids[held], batch.attention_mask[held]
        mask = token_mask(ids, attention, special_token_ids(loaded.tokenizer))
        rows.append(reader.read_activations(ids, attention)[torch.from_numpy(mask)])
    return torch.cat(rows).float()


@pytest.mark.parametrize(
    ("database_url", "store"),
    [("sqlite", "folder"), ("postgresql", "folder"), ("sqlite", "uri")],
    indirect=["database_url"],
)
def test_a_job_trains_saves_and_registers_a_topk_sae(
    database_url, store, assets, ray_cluster, tmp_path, monkeypatch
):
    from saeray.sae import load_sae

    if store == "uri":  # a store every node reads (s3:// on a cluster; file:// is the same path)
        monkeypatch.setenv("SAERAY_ARTIFACTS", f"file://{tmp_path / 'bucket'}")
    engine = open_engine(database_url)
    job_id = new_job(engine, assets)
    job = run_training_job(job_id, engine=engine)
    assert job.status == "completed", job.error
    assert job.progress == 1.0 and job.tokens_processed == SETTINGS["tokens"]

    with Session(engine) as session:
        row = session.get(TrainingJob, job_id)
        sae_row = session.get(SAE, row.sae_id)
    metrics = row.metrics
    assert metrics["steps"] == round(6000 * 4 / 128)
    for key in ("loss", "explained_variance", "l0", "dead_fraction", "auxk_loss"):
        assert isinstance(metrics[key], float), key
    assert metrics["l0"] <= 4 and 0 <= metrics["dead_fraction"] <= 1
    history = metrics["history"]
    assert history[-1]["loss"] < 0.25 * history[0]["loss"]
    assert history[-1]["explained_variance"] > history[0]["explained_variance"] + 0.4
    assert metrics["heldout_tokens"] == SETTINGS["heldout_tokens"]
    assert metrics["explained_variance_heldout"] > 0.85

    assert sae_row.source == "trained" and sae_row.architecture == "topk"
    assert sae_row.name == "tiny-topk" and sae_row.hook_point == HOOK
    assert (sae_row.d_in, sae_row.d_sae) == (32, 64)
    assert sae_row.meta["training_job_id"] == job_id
    assert sae_row.meta["explained_variance_heldout"] == metrics["explained_variance_heldout"]
    assert Path(sae_row.path).parent.name == "saes" and Path(sae_row.path).name == job_id
    if store == "uri":  # registered by its URI, so that a node without this one's files loads it
        assert sae_row.path == f"file://{tmp_path / 'bucket'}/saes/{job_id}"
        monkeypatch.setenv("SAERAY_HOME", str(tmp_path / "another-node"))

    # The saved SAE reads raw activations: on held-out tokens it explains what the job said.
    sae = load_sae(sae_row.path)
    assert sae.k == 4 and sae.hook.layer == 1
    x = heldout_activations(assets, TrainingConfig.from_dict(SETTINGS))
    explained = 1 - (x - sae(x)).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum()
    assert explained.item() == pytest.approx(metrics["explained_variance_heldout"], abs=0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_error_fails_the_job_with_its_message(database_url, assets, ray_cluster, tmp_path):
    engine = open_engine(database_url)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(assets.corpus.read_text())
    job_id = new_job(engine, assets, corpus=corpus)
    corpus.write_text("")  # the corpus is emptied after the job was created
    with pytest.raises(InvalidInputError, match="empty corpus"):
        run_training_job(job_id, engine=engine)
    with Session(engine) as session:
        job = session.get(TrainingJob, job_id)
    assert job.status == "failed" and "empty corpus" in job.error
    assert job.sae_id is None and job.finished_at is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_cancels_a_running_job(database_url, assets, ray_cluster):
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, tokens=50_000_000)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.train", "--job-id", job_id],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = wait_for_training(engine, job_id, process)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, output[-3000:]
    with Session(engine) as session:
        job = session.get(TrainingJob, job_id)
    assert job.status == "cancelled" and "SIGTERM" in job.error
    assert job.sae_id is None
    # While it ran, the row moved: progress, tokens, metrics and heartbeats.
    assert seen.tokens_processed > 0 and "loss" in seen.metrics


def wait_for_training(engine, job_id: str, process: subprocess.Popen) -> TrainingJob:
    """Poll the row until its metrics have been written twice by the training phase."""
    beats = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()[-3000:]
        with Session(engine) as session:
            job = session.get(TrainingJob, job_id)
        if job.status == "training" and job.metrics.get("steps"):
            beats.add(job.heartbeat_at)
            if len(beats) >= 2:
                return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never trained within 180 s")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_creation_refuses_unknown_hooks_datasets_and_settings(database_url, assets):
    engine = open_engine(database_url)
    with Session(engine, expire_on_commit=False) as session:
        dataset = Dataset(name="corpus", spec=str(assets.corpus))
        session.add(dataset)
        session.commit()
        common = {"model": assets.model, "dataset": dataset.id, "config": SETTINGS}
        with pytest.raises(InvalidInputError, match="no hook"):
            create_training_job(session, **{**common, "hook": "blocks.1.hook_nowhere"})
        with pytest.raises(InvalidInputError, match="beyond"):
            create_training_job(session, **{**common, "hook": "blocks.7.hook_resid_post"})
        with pytest.raises(NotFoundError, match="no dataset"):
            create_training_job(session, **{**common, "hook": HOOK, "dataset": "ds_missing"})
        with pytest.raises(InvalidInputError, match="unknown training setting"):
            create_training_job(session, **{**common, "hook": HOOK, "config": {"epochs": 2}})
        assert session.exec(select(TrainingJob)).all() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_entrypoint_explains_missing_flags_and_unknown_jobs(database_url, capsys):
    assert train_main(["--model", "m", "--hook", HOOK]) == 2
    assert "needs --dataset, --d-sae, --k, --tokens" in capsys.readouterr().err
    assert train_main(["--job-id", "trn_missing"]) == 2
    assert "no training job 'trn_missing'" in capsys.readouterr().err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_corpus_spec_is_registered_as_a_dataset_once(database_url, assets):
    engine = open_engine(database_url)
    with Session(engine, expire_on_commit=False) as session:
        first, second = (
            create_training_job(
                session, model=assets.model, hook=HOOK, dataset=str(assets.corpus), config=SETTINGS
            )
            for _ in range(2)
        )
        dataset = session.get(Dataset, first.dataset_id)
    assert dataset.spec == str(assets.corpus) and second.dataset_id == first.dataset_id
    assert first.status == "queued" and first.progress == 0.0
    assert first.tokens_planned == SETTINGS["tokens"] and first.model_name == str(assets.model)
    assert first.config["d_sae"] == 64 and first.config["name"] is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_error_in_the_model_actor_fails_the_job_with_the_cause(
    database_url, assets, ray_cluster, tmp_path
):
    import shutil

    engine = open_engine(database_url)
    model = tmp_path / "model"
    shutil.copytree(assets.model, model)
    job_id = new_job(engine, Assets(model, assets.corpus))
    (model / "model.safetensors").write_bytes(b"not weights" * 100)  # broken after creation
    with pytest.raises(Exception, match="SafetensorError"):
        run_training_job(job_id, engine=engine)
    with Session(engine) as session:
        job = session.get(TrainingJob, job_id)
    assert job.status == "failed"
    assert job.error.startswith("ActorDiedError: ") and "SafetensorError" in job.error
    assert "\n" not in job.error
