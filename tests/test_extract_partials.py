"""Partials, their merge and finalize, against a plain numpy reference (no Ray, no model).

``reference_features`` is the definition of every statistic written the slow, obvious way;
the Ray tests reuse it on their fixture's exact codes (tests/test_extract_job.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeray.extraction.candidates import CandidatePool, Candidates, sample_score, top_score
from saeray.extraction.partials import HISTOGRAM_EDGES, FeatureAccumulator, FeatureResults
from saeray.extraction.sparse_rows import SparseRows
from saeray.extraction.summarize import BatchSummarizer, firing_entries
from saeray.extraction.tokens import TokenCounts, TopTokens, escape_token


def reference_features(
    z: np.ndarray,
    tokens: np.ndarray,
    counted: np.ndarray,
    positions: np.ndarray,
    *,
    top_k: int,
    n_quantiles: int,
    quantile_samples: int,
) -> dict:
    """Every statistic by brute force over z [windows, T, d_sae]."""
    z = np.where(counted[..., None], z, 0).astype(np.float32)
    n_windows, _, d_sae = z.shape
    features = []
    for f in range(d_sae):
        acts = z[:, :, f]
        firing = acts[acts > 0].astype(np.float64)
        window_value = acts.max(axis=1)
        fired = np.flatnonzero(window_value > 0)
        top = sorted(fired, key=lambda w: (-window_value[w], positions[w]))[:top_k]
        bins = np.searchsorted(HISTOGRAM_EDGES, window_value[fired], side="right") - 1
        counts = np.bincount(bins, minlength=len(HISTOGRAM_EDGES) - 1)
        before = np.cumsum(counts) - counts
        quantile_of_bin = np.minimum(n_quantiles * before // max(len(fired), 1), n_quantiles - 1)
        score = sample_score(positions[fired], np.full(len(fired), f))
        samples = set()
        for q in range(n_quantiles):
            members = [i for i in range(len(fired)) if quantile_of_bin[bins[i]] == q]
            members.sort(key=lambda i: (score[i], positions[fired[i]]))
            for i in members[:quantile_samples]:
                samples.add((n_quantiles - 1 - q, int(positions[fired[i]])))
        per_token: dict[int, list[float]] = {}
        for w, t in zip(*np.nonzero(acts > 0), strict=True):
            per_token.setdefault(int(tokens[w, t]), []).append(float(acts[w, t]))
        features.append(
            {
                "count": len(firing),
                "max": float(firing.max()) if len(firing) else 0.0,
                "mean": float(firing.mean()) if len(firing) else 0.0,
                "std": float(firing.std()) if len(firing) else 0.0,
                "histogram": np.bincount(
                    np.searchsorted(HISTOGRAM_EDGES, firing.astype(np.float32), side="right") - 1,
                    minlength=len(HISTOGRAM_EDGES) - 1,
                ),
                "top_positions": [int(positions[w]) for w in top],
                "top_values": [float(window_value[w]) for w in top],
                "top_rows": [acts[w] for w in top],
                "quantile_samples": samples,
                "quantile_rows": {int(positions[w]): acts[w] for w in fired},
                "tokens": {t: (len(v), float(np.sum(v))) for t, v in per_token.items()},
            }
        )
    return {"tokens_counted": int(counted.sum()), "windows": n_windows, "features": features}


def assert_matches_reference(
    results: FeatureResults, reference: dict, tokens: np.ndarray, positions: np.ndarray
) -> None:
    assert results.tokens_counted == reference["tokens_counted"]
    assert results.windows == reference["windows"]
    window_of = {int(p): w for w, p in enumerate(positions)}
    n_features = len(reference["features"])
    top_examples = results.top.features(0, n_features)
    quantile_examples = results.quantile.features(0, n_features)
    top, top_ranks, top_tokens = top_examples.examples, top_examples.ranks, top_examples.tokens
    quantile, quantile_ranks = quantile_examples.examples, quantile_examples.ranks
    by_count, _ = results.top_tokens.ranked(10**6, by="count")
    for f, expected in enumerate(reference["features"]):
        assert results.firing_count[f] == expected["count"], f
        assert results.frequency[f] == pytest.approx(
            expected["count"] / reference["tokens_counted"]
        )
        assert results.max_activation[f] == np.float32(expected["max"]), f
        assert results.mean_activation[f] == pytest.approx(expected["mean"], rel=1e-9, abs=1e-12)
        assert results.std_activation[f] == pytest.approx(expected["std"], rel=1e-6, abs=1e-6)
        assert results.is_dead[f] == (expected["count"] == 0)
        np.testing.assert_array_equal(results.histogram[f], expected["histogram"])

        mine = top.group == f
        assert top.position[mine].tolist() == expected["top_positions"], f
        np.testing.assert_array_equal(top.value[mine], expected["top_values"])
        assert top_ranks[mine].tolist() == list(range(int(mine.sum())))
        width = tokens.shape[1]
        np.testing.assert_array_equal(
            top_examples.rows[mine], np.array(expected["top_rows"]).reshape(-1, width)
        )
        expected_tokens = [tokens[window_of[p]] for p in expected["top_positions"]]
        np.testing.assert_array_equal(
            top_tokens[mine], np.array(expected_tokens).reshape(-1, width)
        )

        mine = quantile.group == f
        got = set(zip(quantile_ranks[mine].tolist(), quantile.position[mine].tolist(), strict=True))
        assert got == expected["quantile_samples"], f
        for position, row in zip(
            quantile.position[mine], quantile_examples.rows[mine], strict=True
        ):
            np.testing.assert_array_equal(row, expected["quantile_rows"][int(position)])

        mine = by_count.feature == f
        got_tokens = dict(
            zip(
                by_count.token[mine].tolist(),
                zip(by_count.count[mine].tolist(), by_count.total[mine].tolist(), strict=True),
                strict=True,
            )
        )
        assert got_tokens.keys() == expected["tokens"].keys(), f
        for token, (count, total) in expected["tokens"].items():
            assert got_tokens[token][0] == count
            assert got_tokens[token][1] == pytest.approx(total, rel=1e-9)


def make_activations(seed: int, n_windows=40, context=8, d_sae=24, vocab=15):
    """Sparse activations on a coarse grid (so window maxima tie), a few dead features,
    and uncounted first tokens (like a BOS)."""
    rng = np.random.default_rng(seed)
    raw = rng.exponential(1.0, (n_windows, context, d_sae)) - 1.6
    z = np.round(np.maximum(raw, 0) * 4) / 4
    z[..., :3] = 0  # dead
    z[..., 3] *= 1e-4  # tiny values, in the first histogram bins
    z[..., 4] *= 1e5  # huge values, in the overflow bin
    tokens = rng.integers(0, vocab, (n_windows, context))
    counted = np.ones((n_windows, context), bool)
    counted[:, 0] = False
    positions = (np.arange(n_windows) * 7 + 3).astype(np.int64)  # any increasing ids
    return z.astype(np.float32), tokens, counted, positions


SETTINGS = {"top_k": 3, "quantile_samples": 2}


def run_partials(z, tokens, counted, positions, *, n_actors, batch, order_seed, tracked=64):
    """Summarize batches on ``n_actors`` summarizers (round robin) and add the partials to
    one accumulator in a shuffled order."""
    n_windows, context, d_sae = z.shape
    actors = [
        BatchSummarizer(d_sae, tracked_tokens=tracked, worker=f"a{i}", **SETTINGS)
        for i in range(n_actors)
    ]
    partials = []
    for i, start in enumerate(range(0, n_windows, batch)):
        part = slice(start, start + batch)
        partials.append(
            actors[i % n_actors].summarize(
                torch.from_numpy(z[part].reshape(-1, d_sae).copy()),
                tokens[part],
                counted[part],
                positions[part],
            )
        )
    accumulator = FeatureAccumulator(d_sae, context, tracked_tokens=tracked, **SETTINGS)
    for index in np.random.default_rng(order_seed).permutation(len(partials)):
        accumulator.add(partials[index])
    return accumulator.finalize(n_quantiles=3)


@pytest.mark.parametrize(
    ("n_actors", "batch", "order_seed"), [(1, 40, 0), (1, 3, 1), (3, 5, 2), (4, 1, 3)]
)
def test_partials_match_reference_however_sharded(n_actors, batch, order_seed):
    z, tokens, counted, positions = make_activations(seed=0)
    reference = reference_features(z, tokens, counted, positions, n_quantiles=3, **SETTINGS)
    results = run_partials(
        z, tokens, counted, positions, n_actors=n_actors, batch=batch, order_seed=order_seed
    )
    assert_matches_reference(results, reference, tokens, positions)
    assert set(results.workers) == {f"a{i}" for i in range(n_actors)}
    assert sum(results.workers.values()) == len(tokens.ravel())  # every token, once


def test_ties_in_window_maxima_are_broken_by_position():
    z, tokens, counted, positions = make_activations(seed=1)
    z[:] = 0
    z[:, 2, 5] = 1.0  # every window ties for feature 5
    results = run_partials(z, tokens, counted, positions, n_actors=2, batch=4, order_seed=5)
    top = results.top.features(5, 6).examples
    assert top.position.tolist() == positions[:3].tolist()


def test_candidate_pool_keeps_best_per_group_in_any_order():
    rng = np.random.default_rng(3)
    n = 2000
    group = rng.integers(0, 7, n)
    value = np.round(rng.random(n) * 10, 1).astype(np.float32) + 0.1
    position = rng.permutation(n).astype(np.int64)
    candidates = Candidates.build(group, top_score(value), position, value)
    candidates.rows = SparseRows.from_dense(np.stack([position, position], axis=1))
    expected = {
        g: sorted(np.flatnonzero(group == g), key=lambda i: (-value[i], position[i]))[:5]
        for g in range(7)
    }
    for seed in range(3):
        pool = CandidatePool(7, 5, width=2)
        for chunk in np.array_split(np.random.default_rng(seed).permutation(n), 13):
            pool.offer(candidates.take(chunk))
        kept, slots = pool.candidates()
        for g in range(7):
            mine = kept.group == g
            assert kept.position[mine].tolist() == position[expected[g]].tolist()
            np.testing.assert_array_equal(pool.rows[slots[mine], 0], kept.position[mine])


def test_top_tokens_beyond_tracked_are_lower_bounds():
    rng = np.random.default_rng(4)
    truth: dict[tuple[int, int], int] = {}
    top = TopTokens(d_sae=3, tracked=4)
    for _ in range(30):
        feature = rng.integers(0, 3, 50)
        token = rng.zipf(1.5, 50) % 40
        key, count = np.unique((feature << 32) | token, return_counts=True)
        for k, c in zip(key.tolist(), count.tolist(), strict=True):
            truth[(k >> 32, k & 0xFFFFFFFF)] = truth.get((k >> 32, k & 0xFFFFFFFF), 0) + c
        top.merge(TopTokens(3, 4, TokenCounts(key >> 32, key & 0xFFFFFFFF, count, count * 1.0)))
        top.flush(trim_above=0)
    ranked, ranks = top.ranked(4, by="count")
    assert np.bincount(ranked.feature, minlength=3).max() <= 4
    for f, t, c in zip(ranked.feature, ranked.token, ranked.count, strict=True):
        assert c <= truth[(int(f), int(t))]
    best = max((c, -t) for (f, t), c in truth.items() if f == 0)
    first = (ranked.feature == 0) & (ranks == 0)
    assert ranked.token[first].tolist() == [-best[1]]  # the heavy hitter survives


def test_top_tokens_merged_a_range_of_features_at_a_time_equal_one_merge(monkeypatch):
    import saeray.extraction.tokens as tokens_module

    rng = np.random.default_rng(8)
    batches = []
    for _ in range(12):
        feature, token = rng.integers(0, 9, 80), rng.integers(0, 60, 80)
        key, count = np.unique((feature << 32) | token, return_counts=True)
        batches.append(TokenCounts(key >> 32, key & 0xFFFFFFFF, count, count * 0.5))

    def merged(step: int) -> TokenCounts:
        monkeypatch.setattr(tokens_module, "_MERGE_STEP", step)
        top = TopTokens(d_sae=9, tracked=5)
        for batch in batches:
            top.merge(TopTokens(9, 5, batch))
            top.flush()
            assert np.bincount(top.counts.feature).max() <= 10  # trimmed past 2 x tracked
        return top.finished().counts

    whole, stepped = merged(1 << 20), merged(7)
    for expected, got in zip(whole.columns(), stepped.columns(), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert np.bincount(whole.feature).max() == 5


def test_escape_token_shows_whitespace_and_control_characters():
    assert escape_token(" the") == " the"
    assert escape_token("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert escape_token("\\n") == "\\\\n"
    assert escape_token("\x00\u200b\u00a0") == "\\u0000\\u200b\\u00a0"


def test_sparse_rows_take_and_write_as_the_dense_rows_would():
    rng = np.random.default_rng(5)
    dense = np.where(rng.random((40, 16)) < 0.15, rng.random((40, 16)), 0).astype(np.float32)
    dense[7] = 0  # a row with no entry at all
    rows = SparseRows.from_dense(dense)
    assert len(rows) == 40
    index = rng.permutation(40)[:25]
    for taken, expected in (
        (rows.take(index), dense[index]),
        (rows.take(slice(5, 12)), dense[5:12]),
    ):
        storage = np.full((30, 16), 9.0, np.float32)  # stale values must not survive a write
        slots = rng.permutation(30)[: len(taken)]
        taken.write_into(storage, slots)
        np.testing.assert_array_equal(storage[slots], expected)


@pytest.mark.parametrize("d_sae", [6, 7])  # even widths are scanned as int64 pairs
def test_firing_entries_are_the_positive_codes(d_sae):
    rng = np.random.default_rng(6)
    codes = np.where(rng.random((9, d_sae)) < 0.3, rng.normal(size=(9, d_sae)), 0.0)
    codes[0, 1], codes[2, 3] = -0.0, -1.5  # neither fires
    codes = codes.astype(np.float32)
    rows = np.arange(9) * 3 + 1
    row, feature, value = firing_entries(torch.from_numpy(codes), torch.from_numpy(rows))
    token, expected_feature = np.nonzero(codes > 0)
    np.testing.assert_array_equal(row.numpy(), rows[token])
    np.testing.assert_array_equal(feature.numpy(), expected_feature)
    np.testing.assert_array_equal(value.numpy(), codes[token, expected_feature])


def test_encoding_a_batch_in_steps_finds_the_firing_codes_of_the_whole_batch():
    from saeray.extraction.encoder_actor import Steps, collect_firing, encode_counted
    from saeray.lm import ActivationReader
    from saeray.sae import HookInfo, StandardSAE
    from tests.lm_fixtures import VOCAB, tiny_model

    generator = torch.Generator().manual_seed(3)
    reader = ActivationReader(tiny_model("gpt2"), "blocks.1.hook_resid_post")
    sae = StandardSAE(
        W_enc=torch.randn(32, 10, generator=generator),
        W_dec=torch.randn(10, 32, generator=generator),
        b_dec=torch.zeros(32),
        b_enc=-torch.rand(10, generator=generator),
        hook=HookInfo("blocks.1.hook_resid_post", 1),
    )
    rng = np.random.default_rng(4)
    input_ids = rng.integers(3, VOCAB, size=(7, 6))
    attention_mask = np.ones((7, 6), np.int64)
    attention_mask[5, 4:] = 0  # padding
    counted = attention_mask.astype(bool) & (rng.random((7, 6)) < 0.8)
    counted[2] = False  # a step with nothing to count is skipped, not run

    with torch.inference_mode():
        activations = reader(input_ids, attention_mask).reshape(-1, 32)
        codes = sae.encode(activations).numpy()
    expected_row, expected_feature = np.nonzero((codes > 0) & counted.reshape(-1, 1))

    for steps in (Steps(forward_tokens=None, encode_rows=1000), Steps(12, 5), Steps(1, 1)):
        with torch.inference_mode():
            encoded = encode_counted(reader, sae, input_ids, attention_mask, counted, steps)
            row, feature, value = collect_firing(encoded, device="cpu")
        np.testing.assert_array_equal(row.numpy(), expected_row)
        np.testing.assert_array_equal(feature.numpy(), expected_feature)
        np.testing.assert_allclose(value.numpy(), codes[expected_row, expected_feature], rtol=1e-6)
    assert Steps.for_device("cpu").windows_per_forward(64, 128) == 8
    assert Steps.for_device("cuda").windows_per_forward(64, 128) == 64
