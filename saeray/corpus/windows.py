"""Tokenise documents into fixed-length windows with provenance.

Each document is tokenised on its own (batch calls to the fast tokenizer, without specials),
then cut into windows of ``content_length`` tokens starting every ``stride`` tokens, the last
one reaching the document's end; a short window is padded (``attention_mask`` 0). Each
window gets the special tokens the model expects:

- if the tokenizer adds specials itself (BERT: ``[CLS] ... [SEP]``; Llama, Gemma, Mistral:
  ``<bos> ...``), exactly those, around every window;
- else, if it has a BOS token (GPT-2, Pythia: ``<|endoftext|>``), that BOS first, as
  TransformerLens and SAELens do;
- else (Qwen) none.

So ``content_length = context_length - number of specials``, and ``stride`` (counted in
document tokens) defaults to ``content_length``: windows tile each document without overlap.
All added tokens are in ``tokenizer.all_special_ids``, so :func:`saeray.lm.token_mask`
leaves exactly the document's tokens. ``add_special_tokens=False`` adds none.

Provenance per window: ``doc_index`` and ``doc_id`` of its document, ``window_index`` within
the document, and ``start``, the offset of its first token among the document's tokens.

:class:`WindowTokenizer` is a Ray Data ``map_batches`` callable (documents as columns in,
windows as columns out; class-based, so each actor loads the tokenizer once);
:func:`iter_windows` does the same in-process and honours ``max_tokens``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from saeray.corpus.sources import Document, documents_to_batch, iter_documents
from saeray.corpus.spec import CorpusSpec
from saeray.errors import InvalidInputError

_PROBE_TEXT = "hello world"


@dataclass(frozen=True)
class WindowConfig:
    """``context_length``: tokens per window, specials included. ``stride``: document
    tokens between window starts (default: no overlap). ``max_tokens``: stop once this many
    tokens (``attention_mask`` 1) are out, cutting the last window short (in-process
    :func:`iter_windows` only). ``add_special_tokens``: add BOS/CLS/SEP as described above.
    """

    context_length: int
    stride: int | None = None
    max_tokens: int | None = None
    add_special_tokens: bool = True


@dataclass
class Windows:
    """A batch of windows: ``input_ids`` and ``attention_mask`` ``[n, context_length]``
    (int64) and provenance arrays ``[n]``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    doc_index: np.ndarray
    doc_id: np.ndarray
    window_index: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def as_dict(self) -> dict[str, np.ndarray]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def take(self, rows: slice | np.ndarray) -> Windows:
        return Windows(**{name: array[rows] for name, array in self.as_dict().items()})

    @classmethod
    def concat(cls, batches: Sequence[Windows]) -> Windows:
        return cls(
            **{
                field.name: np.concatenate([getattr(batch, field.name) for batch in batches])
                for field in fields(cls)
            }
        )


def special_layout(
    tokenizer: PreTrainedTokenizerBase, add_special_tokens: bool = True
) -> tuple[list[int], list[int]]:
    """The special token ids put before and after every window's text."""
    if not add_special_tokens:
        return [], []
    bare = tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
    full = tokenizer(_PROBE_TEXT, add_special_tokens=True)["input_ids"]
    if full != bare:
        for offset in range(len(full) - len(bare) + 1):
            if full[offset : offset + len(bare)] == bare:
                return full[:offset], full[offset + len(bare) :]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []), []


def _fast_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer | None:
    """A private copy of the Rust tokenizer, truncation and padding off, or None (slow
    tokenizers). Its ``encode_batch_fast`` (no offsets) is 2-3x faster than the
    transformers call; the copy keeps saved settings (MiniLM's tokenizer.json truncates and
    pads to 128) from cutting documents, without touching the caller's tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


class WindowTokenizer:
    """Documents to windows. Call it on a batch of document columns (``doc_index``,
    ``doc_id``, ``text``) to get window columns, or use :meth:`windows` on Documents."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase | str | Path, config: WindowConfig
    ) -> None:
        if isinstance(tokenizer, str | Path):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer
        self.config = config
        self.prefix, self.suffix = special_layout(tokenizer, config.add_special_tokens)
        self.content_length = config.context_length - len(self.prefix) - len(self.suffix)
        if self.content_length < 1:
            raise InvalidInputError(
                f"context_length {config.context_length} leaves no room for text next to the "
                f"{len(self.prefix) + len(self.suffix)} special tokens added to each window. "
                "Fix: use a longer context_length."
            )
        self.stride = self.content_length if config.stride is None else config.stride
        if not 1 <= self.stride <= self.content_length:
            raise InvalidInputError(
                f"stride {self.stride} must be between 1 and the {self.content_length} text "
                "tokens of a window (larger strides would skip text). Fix: pick a stride in "
                "that range, or leave it unset for windows that don't overlap."
            )
        self.pad_id = _pad_id(tokenizer)
        self._backend = _fast_backend(tokenizer)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._windows(
            [str(text) for text in batch["text"]],
            np.asarray(batch["doc_index"], dtype=np.int64),
            np.asarray(batch["doc_id"], dtype=object),
        ).as_dict()

    def windows(self, documents: Sequence[Document]) -> Windows:
        return Windows(**self(documents_to_batch(documents)))

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        if self._backend is None:
            return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [e.ids for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _windows(self, texts: list[str], doc_index: np.ndarray, doc_id: np.ndarray) -> Windows:
        encoded = self._token_ids(texts)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        tokens = np.fromiter(
            itertools.chain.from_iterable(encoded), dtype=np.int64, count=int(lengths.sum())
        )
        offsets = np.cumsum(lengths) - lengths
        size, stride = self.content_length, self.stride
        per_doc = np.where(lengths > 0, 1 + np.maximum(lengths - size + stride - 1, 0) // stride, 0)
        doc = np.repeat(np.arange(len(texts)), per_doc)
        window_index = np.arange(len(doc)) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        start = window_index * stride
        filled = np.minimum(size, lengths[doc] - start)  # text tokens in each window

        columns = np.arange(size)
        is_text = columns[None, :] < filled[:, None]
        positions = np.where(is_text, (offsets[doc] + start)[:, None] + columns[None, :], 0)
        text_ids = np.where(is_text, tokens[positions], self.pad_id)

        n_prefix = len(self.prefix)
        input_ids = np.full((len(doc), self.config.context_length), self.pad_id, dtype=np.int64)
        input_ids[:, :n_prefix] = self.prefix
        input_ids[:, n_prefix : n_prefix + size] = text_ids
        rows = np.arange(len(doc))
        for offset, token in enumerate(self.suffix):
            input_ids[rows, n_prefix + filled + offset] = token
        used = n_prefix + filled + len(self.suffix)
        attention_mask = (np.arange(self.config.context_length)[None, :] < used[:, None]).astype(
            np.int64
        )
        return Windows(
            input_ids=input_ids,
            attention_mask=attention_mask,
            doc_index=doc_index[doc],
            doc_id=doc_id[doc],
            window_index=window_index,
            start=start,
        )


def _document_batches(
    documents: Iterable[Document], max_documents: int, max_chars: int
) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for document in documents:
        batch.append(document)
        chars += len(document.text)
        if len(batch) >= max_documents or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def iter_windows(
    corpus: str | CorpusSpec | Iterable[Document],
    tokenizer: PreTrainedTokenizerBase | str | Path | WindowTokenizer,
    config: WindowConfig | None = None,
    *,
    max_documents: int = 1024,
    max_chars: int = 4_000_000,
) -> Iterator[Windows]:
    """Batches of windows over a corpus (a spec or documents), in corpus order.

    ``tokenizer`` may be a ready :class:`WindowTokenizer` (then ``config`` is its own).
    Documents are tokenised ``max_documents`` / ``max_chars`` at a time. With
    ``config.max_tokens`` the stream stops at exactly that many tokens: the window that
    crosses the limit keeps only its first tokens (for BERT-like windows, without [SEP]).
    """
    if isinstance(tokenizer, WindowTokenizer):
        if config is not None and config != tokenizer.config:
            raise InvalidInputError(
                "iter_windows got a WindowTokenizer and a different WindowConfig. "
                "Fix: pass the config to the WindowTokenizer only."
            )
        windower = tokenizer
    elif config is None:
        raise InvalidInputError("iter_windows needs a WindowConfig. Fix: pass config=...")
    else:
        windower = WindowTokenizer(tokenizer, config)
    documents = iter_documents(corpus) if isinstance(corpus, str | CorpusSpec) else corpus
    budget = windower.config.max_tokens
    total = 0
    for batch in _document_batches(documents, max_documents, max_chars):
        windows = windower.windows(batch)
        if budget is not None:
            windows = _cut_to_budget(windows, budget - total, windower.pad_id)
        total += windows.n_tokens
        if len(windows):
            yield windows
        if budget is not None and total >= budget:
            return
    if total == 0:
        raise InvalidInputError(
            "empty corpus: its documents hold no text to tokenise. Fix: check the text field "
            "and the files."
        )


def _cut_to_budget(windows: Windows, budget: int, pad_id: int) -> Windows:
    cumulative = np.cumsum(windows.attention_mask.sum(axis=1))
    if len(cumulative) == 0 or cumulative[-1] <= budget:
        return windows
    last = int(np.searchsorted(cumulative, budget))  # the window that reaches the budget
    kept = windows.take(slice(0, last + 1))
    keep_in_last = budget - (int(cumulative[last - 1]) if last else 0)
    cut = np.cumsum(kept.attention_mask[-1]) > keep_in_last
    kept.attention_mask[-1, cut] = 0
    kept.input_ids[-1, cut] = pad_id
    return kept
