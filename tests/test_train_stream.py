"""The shuffle buffer, the held-out split and the training loop over a chunk stream
(synthetic chunks; the Ray Data stream itself is covered in test_train_job.py)."""

from __future__ import annotations

import numpy as np
import pytest

from saeray.errors import InvalidInputError
from saeray.training.config import TrainingConfig, demo_training_config
from saeray.training.fit import TrainingProgress, train_on_stream
from saeray.training.stream import ShuffleBuffer, heldout_mask
from tests.test_train_topk import sparse_activations


def test_buffer_is_bounded_and_spends_reuse_times_the_tokens_it_saw():
    buffer = ShuffleBuffer(1000, 4, reuse=2.0, seed=0)
    drawn = 0
    for start in range(0, 5000, 300):
        end = min(start + 300, 5000)
        buffer.add(np.arange(start, end, dtype=np.float32)[:, None].repeat(4, axis=1))
        assert buffer.rows.shape == (1000, 4)  # never grows
        for batch in buffer.batches(100):
            drawn += 1
            assert batch[:, 0].min() >= end - 1000  # only the newest 1000 rows are left
    assert drawn == pytest.approx(5000 * 2 / 100, abs=1)
    assert len(list(buffer.drain(100, 3))) == 3


def test_buffer_draws_nothing_until_full():
    buffer = ShuffleBuffer(100, 2, seed=0)
    buffer.add(np.ones((60, 2), dtype=np.float32))
    assert list(buffer.batches(10)) == []
    buffer.add(np.ones((40, 2), dtype=np.float32))
    assert len(list(buffer.batches(10))) == 10


def test_heldout_windows_are_a_stable_hash_of_document_and_window():
    doc = np.repeat(np.arange(2000), 5)
    window = np.tile(np.arange(5), 2000)
    flags = heldout_mask(doc, window, 0.1, seed=0)
    assert 0.08 < flags.mean() < 0.12
    order = np.random.default_rng(0).permutation(len(doc))
    np.testing.assert_array_equal(
        heldout_mask(doc[order], window[order], 0.1, seed=0), flags[order]
    )
    assert (heldout_mask(doc, window, 0.1, seed=1) != flags).any()
    assert not heldout_mask(doc, window, 0.0, seed=0).any()


def chunked(data: np.ndarray, heldout: np.ndarray, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size], heldout[start // 4 : (start + size) // 4]


def test_training_loop_reads_the_budget_trains_and_measures_heldout_tokens():
    data = sparse_activations(7500, seed=0).numpy()
    train, heldout = data[:6000], data[6000:]  # one distribution, distinct tokens
    config = TrainingConfig(
        d_sae=96, k=4, tokens=4000, lr=3e-3, batch_size=128, reuse=3.0, buffer_tokens=1024,
        heldout_tokens=600,
    )  # fmt: skip
    reports: list[TrainingProgress] = []
    result = train_on_stream(
        lambda epoch: chunked(train, heldout, 250), config, report=reports.append
    )
    metrics = result.metrics
    assert metrics["tokens_read"] == 4000 and metrics["passes"] == 1
    assert result.trainer.steps == config.total_steps == round(4000 * 3 / 128)
    assert metrics["heldout_tokens"] >= 600
    assert metrics["explained_variance_heldout"] > 0.7
    assert metrics["l0_heldout"] <= 4
    history = metrics["history"]
    assert history[0]["step"] == 1 and history[-1]["step"] <= config.total_steps
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["explained_variance"] > history[0]["explained_variance"]
    progress = [report.progress for report in reports]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert reports[-1].tokens_processed == 4000


def test_a_corpus_smaller_than_the_budget_is_read_again():
    data = sparse_activations(1500, seed=2).numpy()
    config = TrainingConfig(d_sae=32, k=4, tokens=4000, batch_size=128, heldout_tokens=0)
    passes: list[int] = []

    def open_stream(epoch: int):
        passes.append(epoch)
        return chunked(data, data[:0], 500)

    result = train_on_stream(open_stream, config)
    assert passes == [0, 1, 2] and result.metrics["tokens_read"] == 4000
    assert result.metrics["explained_variance_heldout"] is None


def test_a_stream_with_no_training_tokens_is_refused():
    empty = np.zeros((0, 8), dtype=np.float32)
    config = TrainingConfig(d_sae=32, k=4, tokens=100)
    with pytest.raises(InvalidInputError, match="no training tokens"):
        train_on_stream(lambda epoch: iter([(empty, empty)]), config)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k": 64, "d_sae": 32}, "larger than d_sae"),
        ({"tokens": 0}, "tokens must be a positive integer"),
        ({"reuse": 0}, "reuse must be positive"),
        ({"b_dec_init": "zeros"}, "b_dec_init must be one of"),
        ({"lr": 2.0}, "lr must lie"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(settings, message):
    values = {"d_sae": 64, "k": 8, "tokens": 1000, **settings}
    with pytest.raises(InvalidInputError, match=message):
        TrainingConfig(**values)


def test_config_round_trips_through_the_job_row_and_refuses_unknown_keys():
    config = demo_training_config()
    assert TrainingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidInputError, match="unknown training setting"):
        TrainingConfig.from_dict({**config.to_dict(), "epochs": 3})
    trainer = config.trainer_config()
    assert trainer.dead_after_tokens == config.total_steps * config.batch_size // 20
    assert 0 < config.heldout_fraction <= 0.2
