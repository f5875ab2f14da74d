"""The extraction job on real Ray: exact against a numpy reference with one actor and with
several, a worker killed mid-run, cancellation by SIGTERM, and validation at creation.

One tiny GPT-2 (2 layers, width 32) and a word-level tokenizer are saved to disk so Ray
workers load them by path, with a tiny SAE in saeray's format and a small JSONL corpus. One
Ray instance (2 CPUs) serves the whole module.

The fixture is exact by construction, so that "equal to the reference" can mean bit for bit.
Two float32 forward passes in different processes need not agree in the last bit: BLAS and
attention kernels pick their summation order by shape, alignment, thread count and CPU (a
CI run once found one feature's activations summing 2**-23 away from an in-process forward
pass's: one pre-activation rounded the other way). So the model's embeddings, its blocks'
output biases and the SAE's weights are small dyadic numbers (k / 2**n), and the blocks'
output projections are zero: every block runs (layer norms, attention, MLP) but adds an
exact constant to the residual stream, every activation and every code is exactly
representable, and no kernel can round them. The reference computes them in float64 numpy,
without the model.
"""

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

import numpy as np
import pytest
import torch
import transformers as tf
from sqlmodel import Session, select

from saeray.artifacts import ArtifactStore
from saeray.db.engine import open_engine
from saeray.db.tables import SAE, Dataset, ExtractionJob, Feature
from saeray.errors import ConflictError, InvalidInputError, NotFoundError
from saeray.examples import examples_dir, read_examples
from saeray.extraction import ExtractionConfig, create_extraction_job, run_extraction_job
from saeray.extraction.encoder_actor import FAULT_MARKER_ENV, window_positions
from saeray.extraction.persist import feature_name
from saeray.sae import HookInfo, StandardSAE, save_sae
from tests.lm_fixtures import WORDS, tiny_tokenizer
from tests.test_extract_partials import reference_features

D_MODEL, D_SAE = 32, 40
LAYER = 1  # the last of the model's two blocks
HOOK = f"blocks.{LAYER}.hook_resid_post"
REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "context_length": 16,
    "batch_size": 4,
    "top_k": 3,
    "n_quantiles": 3,
    "quantile_samples": 2,
    "top_tokens": 5,
    "logit_effects": 4,
    "cpus_per_actor": 0.25,  # several actors still leave a CPU for tokenising
}


@dataclass(frozen=True)
class Assets:
    model: Path
    sae: Path
    corpus: Path


def _dyadic(
    generator: torch.Generator, shape: tuple[int, ...], bound: int, bits: int
) -> torch.Tensor:
    """Uniform multiples of 2**-bits in [-bound, bound]: exact in float32, and so are their
    sums and products at this fixture's sizes."""
    scale = 2**bits
    return torch.randint(-bound * scale, bound * scale + 1, shape, generator=generator) / scale


def build_assets(root: Path, *, documents: int = 30, max_words: int = 60) -> Assets:
    """A tiny GPT-2 with its tokenizer, a ReLU SAE at its last block, and a JSONL corpus;
    exact by construction (see the module's docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer("gpt2")
    torch.manual_seed(0)
    config = tf.GPT2Config(
        n_embd=D_MODEL,
        n_layer=2,
        n_head=2,
        n_positions=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = tf.GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for embedding, bound in ((model.transformer.wte, 2), (model.transformer.wpe, 1)):
            embedding.weight.copy_(_dyadic(generator, embedding.weight.shape, bound, 3))
        for block in model.transformer.h:
            for projection in (block.attn.c_proj, block.mlp.c_proj):
                projection.weight.zero_()
                projection.bias.copy_(_dyadic(generator, projection.bias.shape, 1, 3))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    # Thresholds rising with the index: features from frequent to rare to dead.
    threshold = 1.0 + 0.3 * torch.arange(D_SAE) + torch.rand(D_SAE, generator=generator)
    sae = StandardSAE(
        W_enc=_dyadic(generator, (D_MODEL, D_SAE), 1, 4),
        W_dec=torch.randn(D_SAE, D_MODEL, generator=generator),
        b_dec=torch.zeros(D_MODEL),
        b_enc=-torch.round(threshold * 2**7) / 2**7,
        hook=HookInfo(HOOK, LAYER),
        model_name=str(root / "model"),
    )
    save_sae(sae, root / "sae")
    rng = random.Random(0)
    lines = [
        json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, max_words)))})
        for _ in range(documents)
    ]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return Assets(root / "model", root / "sae", root / "corpus.jsonl")


def exact_activations(assets: Assets, input_ids: np.ndarray) -> np.ndarray:
    """The fixture model's activations at HOOK, in float64 numpy: token and position
    embeddings plus every block's constant (its output projections' biases)."""
    from saeray.lm import load_model

    weights = {
        name: tensor.double().numpy()
        for name, tensor in load_model(assets.model).model.state_dict().items()
    }
    constant = sum(
        weights[f"transformer.h.{layer}.{part}.c_proj.bias"]
        for layer in range(LAYER + 1)
        for part in ("attn", "mlp")
    )
    positions = np.arange(input_ids.shape[1])
    return (
        weights["transformer.wte.weight"][input_ids]
        + weights["transformer.wpe.weight"][positions]
        + constant
    )


def exact_codes(assets: Assets, activations: np.ndarray) -> np.ndarray:
    """The SAE's codes, relu(x @ W_enc + b_enc), in float64 numpy."""
    from saeray.sae import load_sae

    sae = load_sae(assets.sae)
    return np.maximum(activations @ sae.W_enc.double().numpy() + sae.b_enc.double().numpy(), 0)


def reference_for(assets: Assets, config: ExtractionConfig) -> dict:
    """Every statistic by brute force over the fixture's exact codes, in numpy."""
    from saeray.corpus import WindowConfig, Windows, iter_windows
    from saeray.lm import special_token_ids, token_mask

    tokenizer = tf.AutoTokenizer.from_pretrained(assets.model)
    window_config = WindowConfig(config.context_length, max_tokens=config.max_tokens)
    windows = Windows.concat(list(iter_windows(str(assets.corpus), tokenizer, window_config)))
    z = exact_codes(assets, exact_activations(assets, windows.input_ids))
    counted = token_mask(windows.input_ids, windows.attention_mask, special_token_ids(tokenizer))
    positions = window_positions(windows.doc_index, windows.window_index)
    reference = reference_features(
        z.astype(np.float32),  # exact: the codes are dyadic
        windows.input_ids,
        counted,
        positions,
        top_k=config.top_k,
        n_quantiles=config.n_quantiles,
        quantile_samples=config.quantile_samples,
    )
    reference["windows_by_position"] = {
        int(p): (windows.input_ids[i], int(windows.attention_mask[i].sum()))
        for i, p in enumerate(positions)
    }
    reference["tokens"] = windows.n_tokens
    return reference


def assert_job_matches_reference(engine, job_id: str, reference: dict, top_tokens: int) -> None:
    store = ArtifactStore()
    with Session(engine) as session:
        job = session.get(ExtractionJob, job_id)
        assert job.status == "completed", job.error
        assert job.progress == 1.0
        assert job.tokens_processed == job.tokens_planned == reference["tokens"]
        assert job.statistics["tokens_counted"] == reference["tokens_counted"]
        assert job.statistics["windows"] == reference["windows"]
        features = session.exec(
            select(Feature).where(Feature.extraction_id == job_id).order_by(Feature.index)
        ).all()
    assert [f.index for f in features] == list(range(D_SAE))
    windows = reference["windows_by_position"]
    for feature, expected in zip(features, reference["features"], strict=True):
        f = feature.index
        assert feature.name == feature_name(f)
        assert feature.firing_count == expected["count"], f
        assert feature.is_dead == (expected["count"] == 0)
        assert feature.frequency == expected["count"] / reference["tokens_counted"], f
        assert feature.max_activation == expected["max"], f
        assert feature.mean_activation == expected["mean"], f  # float64 sums of exact codes
        # The job's std comes from its moments, the reference's from a second pass.
        assert feature.std_activation == pytest.approx(expected["std"], rel=1e-9, abs=1e-12), f
        counts = feature.histogram["counts"]
        hist = expected["histogram"]
        filled = np.flatnonzero(hist)
        assert counts == (hist[filled[0] : filled[-1] + 1].tolist() if len(filled) else [])

        tokens = [
            (token, count, total / count) for token, (count, total) in expected["tokens"].items()
        ]
        by_count = sorted(tokens, key=lambda t: (-t[1], t[0]))[:top_tokens]
        by_mean = sorted(tokens, key=lambda t: (-t[2], -t[1], t[0]))[:top_tokens]
        for ranking, want in (("by_count", by_count), ("by_mean", by_mean)):
            got = [
                (t["token_id"], t["count"], t["mean_activation"])
                for t in feature.top_tokens[ranking]
            ]
            assert got == want, (f, ranking)
        assert len(feature.logit_effects["promoted"]) == 4  # GPT-2 has an unembedding

        examples = read_examples(store, job_id, f)
        top = [e for e in examples if e.kind == "top"]
        positions = [int(window_positions(np.array([e.doc_index]), np.array([e.window_index]))[0])
                     for e in top]  # fmt: skip
        assert positions == expected["top_positions"], f
        assert [e.rank for e in top] == list(range(len(top)))
        for example, value, row, position in zip(
            top, expected["top_values"], expected["top_rows"], positions, strict=True
        ):
            ids, length = windows[position]
            assert example.max_activation == value
            assert example.token_ids == ids[:length].tolist()
            assert len(example.tokens) == length
            np.testing.assert_array_equal(example.activations, row[:length])
        quantile = {
            (e.rank, int(window_positions(np.array([e.doc_index]), np.array([e.window_index]))[0]))
            for e in examples
            if e.kind == "quantile"
        }
        assert quantile == expected["quantile_samples"], f


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    return build_assets(tmp_path_factory.mktemp("extract-assets"))


@pytest.fixture(scope="module")
def fault_marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults") / "kill-an-actor"


@pytest.fixture(scope="module")
def ray_cluster(fault_marker):
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {FAULT_MARKER_ENV: str(fault_marker)}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def new_job(engine, assets: Assets, **settings) -> str:
    from saeray.catalogue import register_dataset, register_sae

    with Session(engine, expire_on_commit=False) as session:
        sae = register_sae(session, str(assets.sae))
        dataset = register_dataset(session, str(assets.corpus))
        config = ExtractionConfig.from_dict({**SETTINGS, **settings})
        return create_extraction_job(session, sae.id, dataset.id, config).id


# --- tests ---------------------------------------------------------------------------------


def test_the_fixture_model_and_sae_compute_exactly_what_the_reference_computes(assets):
    """The premise of the exactness tests: a torch forward pass and encode give the float64
    numpy reference's values bit for bit, in one batch or window by window."""
    from saeray.corpus import WindowConfig, Windows, iter_windows
    from saeray.lm import ActivationReader, load_model
    from saeray.sae import load_sae

    loaded = load_model(assets.model)
    windows = Windows.concat(
        list(iter_windows(str(assets.corpus), loaded.tokenizer, WindowConfig(16)))
    )
    real = windows.attention_mask.astype(bool)
    expected = exact_codes(assets, exact_activations(assets, windows.input_ids))[real]
    reader, sae = ActivationReader(loaded, HOOK), load_sae(assets.sae)
    with torch.inference_mode():
        whole = reader(windows.input_ids, windows.attention_mask)
        one_by_one = torch.cat(
            [
                reader(ids[None], mask[None])
                for ids, mask in zip(windows.input_ids, windows.attention_mask, strict=True)
            ]
        )
        for activations in (whole, one_by_one):
            codes = sae.encode(activations).double().numpy()[real]
            np.testing.assert_array_equal(codes, expected)
    assert 0 < (expected > 0).mean() < 0.5  # features fire, sparsely
    assert len(np.unique(expected[expected > 0])) < (expected > 0).sum()  # exact ties occur


@pytest.mark.parametrize(
    ("database_url", "num_actors", "concurrent_batches"),
    [("sqlite", 1, 1), ("sqlite", 1, 3), ("sqlite", 3, 2), ("postgresql", 2, 2)],
    indirect=["database_url"],
)
def test_extraction_is_exact_with_any_number_of_actors(
    database_url, num_actors, concurrent_batches, assets, ray_cluster
):
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=num_actors, concurrent_batches=concurrent_batches)
    job = run_extraction_job(job_id, engine=engine)
    assert job.status == "completed"
    assert job.statistics["actors"] == num_actors  # every actor of the pool took batches
    reference = reference_for(assets, ExtractionConfig.from_dict(SETTINGS))
    assert_job_matches_reference(engine, job_id, reference, SETTINGS["top_tokens"])
    job_folder = Path(ArtifactStore().path(examples_dir(job_id))).parent
    assert [p.name for p in job_folder.iterdir()] == ["examples"]  # no staging left behind


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_actor_is_restarted_and_results_stay_exact(
    database_url, assets, ray_cluster, fault_marker
):
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=1, max_tokens=600)
    fault_marker.touch()  # the actor dies at its second batch, once
    job = run_extraction_job(job_id, engine=engine)
    assert not fault_marker.exists(), "the actor never died: the test proves nothing"
    assert job.status == "completed", job.error
    reference = reference_for(assets, ExtractionConfig.from_dict({**SETTINGS, "max_tokens": 600}))
    assert_job_matches_reference(engine, job_id, reference, SETTINGS["top_tokens"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_cancels_the_job_within_seconds_and_leaves_nothing(
    database_url, ray_cluster, tmp_path
):
    """The job process as `ray job submit` runs it, given the row id the HTTP API made."""
    assets = build_assets(tmp_path / "big", documents=300, max_words=200)
    engine = open_engine(database_url)
    job_id = new_job(engine, assets, num_actors=1, batch_size=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.extract", "--job-id", job_id],
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": ray_cluster},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        job = wait_for(engine, job_id, lambda job: job.tokens_processed > 0, timeout=300)
        assert job.status == "extracting"
        assert 0 < job.progress < 1
        heartbeat_age = time.time() - job.heartbeat_at.replace(tzinfo=None).timestamp()
        assert heartbeat_age < 3.0  # written at most 2 s apart (clock read a moment later)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        output, _ = process.communicate(timeout=60)
        assert time.monotonic() - stopped < 15, output.decode()[-3000:]
    finally:
        process.kill()
    assert process.returncode == 143, output.decode()[-3000:]
    with Session(engine) as session:
        job = session.get(ExtractionJob, job_id)
        assert job.status == "cancelled"
        assert "SIGTERM" in job.error
        assert session.exec(select(Feature).where(Feature.extraction_id == job_id)).first() is None
    assert not ArtifactStore().exists(f"extractions/{job_id}")


def wait_for(engine, job_id: str, condition, *, timeout: float) -> ExtractionJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            job = session.get(ExtractionJob, job_id)
            if condition(job) or job.status in ("completed", "failed", "cancelled"):
                return job
        time.sleep(0.2)
    raise AssertionError(f"extraction {job_id} did not get there in {timeout} s")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_request_fails_before_a_job_exists(database_url, assets, tmp_path):
    from saeray.catalogue import register_sae

    engine = open_engine(database_url)
    narrow = StandardSAE(
        W_enc=torch.ones(16, 8),
        W_dec=torch.ones(8, 16),
        b_dec=torch.zeros(16),
        b_enc=torch.zeros(8),
        hook=HookInfo(HOOK, 1),
        model_name=str(assets.model),
    )
    save_sae(narrow, tmp_path / "narrow")
    with Session(engine, expire_on_commit=False) as session:
        sae = register_sae(session, str(assets.sae))
        wrong_width = register_sae(session, str(tmp_path / "narrow"))
        dataset = Dataset(name="corpus", spec=str(assets.corpus))
        streamed = Dataset(name="stream", spec="hf:org/name")
        session.add_all([dataset, streamed])
        session.commit()
        cases = [
            ((wrong_width.id, dataset.id, {}), InvalidInputError, "width 16"),
            (
                (sae.id, dataset.id, {"hook": "blocks.7.hook_resid_post"}),
                InvalidInputError,
                "layer 7",
            ),
            ((sae.id, dataset.id, {"topk": 3}), InvalidInputError, "unknown extraction setting"),
            ((sae.id, dataset.id, {"top_k": 0}), InvalidInputError, "top_k"),
            ((sae.id, streamed.id, {}), InvalidInputError, "max_tokens"),
            (("sae_nope", dataset.id, {}), NotFoundError, "sae_nope"),
            ((sae.id, "ds_nope", {}), NotFoundError, "ds_nope"),
        ]
        for (sae_id, dataset_id, config), error, words in cases:
            with pytest.raises(error, match=words):
                create_extraction_job(session, sae_id, dataset_id, config)
        assert session.exec(select(ExtractionJob)).first() is None

        job = create_extraction_job(session, sae.id, dataset.id, {"max_tokens": 100})
        assert (job.status, job.progress, job.tokens_planned) == ("queued", 0.0, 100)
        assert (job.model_name, job.hook_point) == (str(assets.model), HOOK)  # the SAE's own
        job.status = "completed"
        session.add(job)
        session.commit()
    with pytest.raises(ConflictError, match="only a queued extraction"):
        run_extraction_job(job.id, engine=engine)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_job_entrypoint_registers_an_sae_path_and_a_corpus_spec(
    database_url, assets, ray_cluster, capsys
):
    from jobs.extract import main

    flags = ["--context-length", "16", "--batch-size", "4", "--top-k", "3"]
    flags += ["--max-tokens", "300", "--cpus-per-actor", "0.25"]
    code = main(["--sae", str(assets.sae), "--dataset", str(assets.corpus), *flags])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert summary["tokens_processed"] == 300
    with Session(open_engine(database_url)) as session:
        job = session.get(ExtractionJob, summary["id"])
        sae = session.get(SAE, job.sae_id)
        dataset = session.get(Dataset, job.dataset_id)
    assert sae.path == str(assets.sae.resolve())
    assert dataset.spec == str(assets.corpus)
    assert (job.config["max_tokens"], job.config["top_k"]) == (300, 3)
    assert (job.hook_point, job.model_name) == (HOOK, str(assets.model))
    assert main(["--dataset", str(assets.corpus)]) == 2  # a usage mistake, said as such


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_error_in_the_run_fails_the_job_with_its_message(database_url, ray_cluster, tmp_path):
    assets = build_assets(tmp_path / "gone", documents=5)
    engine = open_engine(database_url)
    job_id = new_job(engine, assets)
    assets.corpus.unlink()  # after validation, before the run reads it
    with pytest.raises(Exception, match="corpus.jsonl"):
        run_extraction_job(job_id, engine=engine)
    with Session(engine) as session:
        job = session.get(ExtractionJob, job_id)
        assert job.status == "failed"
        assert "corpus.jsonl" in job.error
        assert job.finished_at is not None
        assert session.exec(select(Feature).where(Feature.extraction_id == job_id)).first() is None
    assert not ArtifactStore().exists(f"extractions/{job_id}")
