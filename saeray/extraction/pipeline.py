"""The Ray Data pipeline of an extraction, and the driver loop that merges its output.

    shards --flat_map(read)--> documents --map_batches(tokenize, CPU tasks)--> windows
           --map_batches(ExtractionEncoder, actor pool, GPU when there is one)--> partials
           --> driver: FeatureAccumulator.add, progress

Which windows a job covers is fixed before Ray Data starts (``plan_corpus``): the first
``max_tokens`` tokens in corpus order, exactly as ``saeray.corpus.iter_windows`` cuts them.
So every run over the same corpus sees the same windows, however it is sharded.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from saeray.corpus import (
    CorpusShard,
    CorpusSpec,
    WindowConfig,
    Windows,
    WindowTokenizer,
    iter_windows,
    list_shards,
    read_shard,
)
from saeray.extraction.encoder_actor import EncoderSpec, ExtractionEncoder
from saeray.extraction.partials import FeatureAccumulator, Partial

# Time allowed for the whole actor pool to start (a GPU node of an autoscaling cluster
# can take minutes to come up) before the job fails saying the cluster lacks resources.
ACTOR_START_TIMEOUT_S = 900
# Documents per read task at least: Ray tasks cost milliseconds each, documents far less.
MIN_DOCUMENTS_PER_READ = 256
# The plan reads and tokenises this many documents at a time, so it stops reading soon after
# the budget is reached (the built-in corpus ast-parses every module it reads: at the default
# 1,024 a 200k-token plan parsed the whole standard library, ~2 s, to use 140 documents).
PLAN_DOCUMENTS_PER_BATCH = 64


@dataclass(frozen=True)
class CorpusPlan:
    """The windows a job covers: everything up to the last one, which may be cut short."""

    tokens: int
    windows: int
    last_doc: int
    last_window: int
    last_window_tokens: int


def plan_corpus(spec: CorpusSpec, tokenizer: WindowTokenizer, max_tokens: int | None) -> CorpusPlan:
    """Tokenise in corpus order up to ``max_tokens`` (in this process, streaming) to fix the
    job's windows and its token count. Costs one tokenisation of that prefix."""
    tokens = windows = 0
    last: Windows | None = None
    batches = iter_windows(
        spec, _with_budget(tokenizer, max_tokens), max_documents=PLAN_DOCUMENTS_PER_BATCH
    )
    for batch in batches:
        tokens += batch.n_tokens
        windows += len(batch)
        last = batch
    assert last is not None  # iter_windows refuses an empty corpus
    return CorpusPlan(
        tokens=tokens,
        windows=windows,
        last_doc=int(last.doc_index[-1]),
        last_window=int(last.window_index[-1]),
        last_window_tokens=int(last.attention_mask[-1].sum()),
    )


def _with_budget(tokenizer: WindowTokenizer, max_tokens: int | None) -> WindowTokenizer:
    """The same windowing with a token budget (only iter_windows honours it)."""
    config = WindowConfig(
        context_length=tokenizer.config.context_length,
        stride=tokenizer.config.stride,
        max_tokens=max_tokens,
        add_special_tokens=tokenizer.config.add_special_tokens,
    )
    return WindowTokenizer(tokenizer.tokenizer, config)


def read_documents(
    row: dict[str, Any], *, groups: list[list[CorpusShard]], last_doc: int
) -> Iterator[dict]:
    """Ray Data ``flat_map``: the documents of one group of shards, up to the plan's last."""
    for shard in groups[int(row["group"])]:
        for document in read_shard(shard):
            if document.index > last_doc:
                return
            if not document.text.strip():
                continue  # no tokens; and a batch of only such would be an empty window batch
            yield {
                "doc_index": document.index,
                "doc_id": document.doc_id,
                "text": document.text,
            }


def group_shards(shards: list[CorpusShard], min_documents: int) -> list[list[CorpusShard]]:
    """Consecutive shards grouped into read tasks of at least ``min_documents`` documents
    (a corpus of many one-document files would otherwise cost a Ray task per document)."""
    groups: list[list[CorpusShard]] = [[]]
    size = 0
    for shard in shards:
        if size >= min_documents:
            groups.append([])
            size = 0
        groups[-1].append(shard)
        size += shard.count if shard.count is not None else min_documents
    return groups


@cache
def _window_tokenizer(tokenizer: str, config: WindowConfig) -> WindowTokenizer:
    return WindowTokenizer(tokenizer, config)  # once per worker process


def tokenize_documents(
    batch: dict[str, np.ndarray], *, tokenizer: str, config: WindowConfig, plan: CorpusPlan
) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` (a CPU task): documents -> the plan's windows."""
    windows = Windows(**_window_tokenizer(tokenizer, config)(batch))
    doc, index = windows.doc_index, windows.window_index
    keep = (doc < plan.last_doc) | ((doc == plan.last_doc) & (index <= plan.last_window))
    windows = windows.take(keep)
    last = np.flatnonzero(
        (windows.doc_index == plan.last_doc) & (windows.window_index == plan.last_window)
    )
    if len(last):
        cut = np.cumsum(windows.attention_mask[last[0]]) > plan.last_window_tokens
        windows.attention_mask[last[0], cut] = 0
        windows.input_ids[last[0], cut] = _window_tokenizer(tokenizer, config).pad_id
    columns = windows.as_dict()
    del columns["doc_id"], columns["start"]  # not needed downstream
    return columns


@dataclass(frozen=True)
class ActorResources:
    num_actors: int
    concurrent_batches: int
    num_gpus: float
    num_cpus: float
    resources: dict[str, float]
    max_restarts: int


def build_dataset(
    spec: CorpusSpec,
    tokenizer: str,
    window_config: WindowConfig,
    plan: CorpusPlan,
    encoder: EncoderSpec,
    batch_size: int,
    actors: ActorResources,
):  # noqa: ANN201 - a ray.data.Dataset, imported lazily
    import ray.data

    shards = [shard for shard in list_shards(spec) if shard.first_index <= plan.last_doc]
    groups = group_shards(shards, MIN_DOCUMENTS_PER_READ)
    dataset = ray.data.from_items(
        [{"group": i} for i in range(len(groups))], override_num_blocks=len(groups)
    )
    dataset = dataset.flat_map(
        read_documents, fn_kwargs={"groups": groups, "last_doc": plan.last_doc}
    )
    dataset = dataset.map_batches(
        tokenize_documents,
        fn_kwargs={"tokenizer": tokenizer, "config": window_config, "plan": plan},
        batch_format="numpy",
    )
    # One block per encoder batch, so that batches spread over every actor in the pool.
    dataset = dataset.repartition(target_num_rows_per_block=batch_size, strict=True)
    # Start work once every actor is up (so all share it), and say so clearly when the
    # cluster cannot host them, rather than wait forever.
    dataset.context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts through ray_remote_args but has no
        # named parameter for it yet; its own default (restart forever) can loop on a
        # batch that always kills its actor, so the bound is set here.
        warnings.simplefilter("ignore", DeprecationWarning)
        return dataset.map_batches(
            ExtractionEncoder,
            fn_constructor_kwargs={"spec": encoder},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                size=actors.num_actors,
                max_concurrent_calls_per_actor=actors.concurrent_batches,
                enable_true_multi_threading=actors.concurrent_batches > 1,
            ),
            num_gpus=actors.num_gpus,
            num_cpus=actors.num_cpus,
            resources=actors.resources or None,
            # A dead actor is restarted and its batches retried: each batch's partial is
            # counted once, and a fresh actor only sends more candidates, never fewer.
            max_restarts=actors.max_restarts,
            max_task_retries=actors.max_restarts,
        )


def merge_partials(
    dataset: Any,
    accumulator: FeatureAccumulator,
    on_partial: Callable[[Partial], None],
) -> FeatureAccumulator:
    """Run the pipeline, adding each partial as it arrives (the driver never holds more
    than the accumulator and one block)."""
    for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for payload in block.column("partial").to_pylist():
            partial: Partial = pickle.loads(payload)
            accumulator.add(partial)
            on_partial(partial)
    return accumulator
