"""The phases of one extraction run: loading, extracting, saving.

``run_extraction_job`` (saeray.extraction.job) wraps this with the row's lifecycle,
cancellation and failure handling; this module does the work.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.catalogue import get
from saeray.db.tables import SAE, Dataset, ExtractionJob
from saeray.extraction.config import ExtractionConfig
from saeray.extraction.encoder_actor import EncoderSpec
from saeray.extraction.partials import FeatureAccumulator, FeatureResults, Partial
from saeray.extraction.persist import discard, save_features, write_examples_staged
from saeray.extraction.progress import ProgressReporter
from saeray.lifecycle import JobCancelled, JobStatus, transition

if TYPE_CHECKING:
    from saeray.corpus import CorpusSpec, WindowConfig
    from saeray.extraction.logit_effects import LogitEffects
    from saeray.extraction.pipeline import ActorResources, CorpusPlan

log = logging.getLogger(__name__)


class ExtractionRun:
    def __init__(self, session: Session, job: ExtractionJob, engine: Engine) -> None:
        self.session = session
        self.job = job
        self.config = ExtractionConfig.from_dict(job.config)
        self.store = ArtifactStore()
        self.progress = ProgressReporter(engine, job.id)
        self.started = 0.0
        self.first_partial: tuple[float, int] | None = None  # (when, tokens): start-up ends

    def execute(self) -> None:
        from transformers import AutoTokenizer

        from saeray.corpus import WindowConfig, WindowTokenizer, parse_corpus_spec
        from saeray.extraction.pipeline import merge_partials, plan_corpus

        job, config = self.job, self.config
        assert config.model is not None and config.hook is not None  # filled in at creation
        with self.progress:
            sae = get(self.session, SAE, job.sae_id)
            dataset = get(self.session, Dataset, job.dataset_id)
            spec = parse_corpus_spec(dataset.spec, text_field=dataset.text_field)
            tokenizer = AutoTokenizer.from_pretrained(config.model)
            window_config = WindowConfig(context_length=config.context_length)
            plan = plan_corpus(spec, WindowTokenizer(tokenizer, window_config), config.max_tokens)
            log.info("extraction %s covers %d tokens in %d windows", job.id, plan.tokens,
                     plan.windows)  # fmt: skip
            # Before the actors start: it never holds a GPU or memory beside them, and a
            # model that cannot load fails the job before any extraction work.
            logits = self._logit_effects(sae)
            pipeline = self._pipeline(sae, spec, window_config, plan)

            transition(self.session, job, JobStatus.EXTRACTING)
            self.progress.start_counting(plan.tokens)
            accumulator = FeatureAccumulator(
                sae.d_sae,
                config.context_length,
                top_k=config.top_k,
                quantile_samples=config.quantile_samples,
                tracked_tokens=config.tracked_tokens,
            )
            self.started = time.monotonic()
            merge_partials(pipeline, accumulator, self._on_partial)
            seconds = time.monotonic() - self.started

            transition(self.session, job, JobStatus.SAVING)
            results = accumulator.finalize(config.n_quantiles)
            vocabulary = _vocabulary(tokenizer, results, logits)
            examples = write_examples_staged(self.store, job.id, results, vocabulary)
            self.progress.stop()  # the final write below must be the row's last
            job.tokens_processed = accumulator.tokens_seen
            job.tokens_per_second = accumulator.tokens_seen / seconds if seconds else 0.0
            save_features(
                self.session,
                job,
                results,
                vocabulary=vocabulary,
                logits=logits,
                top_tokens=config.top_tokens,
                statistics=self._statistics(accumulator, results, seconds),
                artifact_uri=self.store.address(examples),
            )

    def abandon(self) -> None:
        """After a failure or cancellation: stop writing progress, drop written examples."""
        self.progress.stop()
        try:
            discard(self.store, self.job.id)
        except Exception:
            log.exception("could not remove the examples of extraction %s", self.job.id)

    def _on_partial(self, partial: Partial) -> None:
        if self.first_partial is None:
            self.first_partial = (time.monotonic() - self.started, partial.tokens_seen)
        self.progress.advance(partial.tokens_seen)
        if self.progress.ended_elsewhere.is_set():
            raise JobCancelled(f"extraction {self.job.id} was ended elsewhere; stopping")

    def connect_ray(self) -> None:
        """Join the cluster (RAY_ADDRESS, or a local one), naming the job in the dashboard."""
        import ray
        from ray.job_config import JobConfig

        if ray.is_initialized():
            return
        sae = get(self.session, SAE, self.job.sae_id)
        dataset = get(self.session, Dataset, self.job.dataset_id)
        metadata = {
            "saeray_job": self.job.id,
            "kind": "extraction",
            "sae": f"{sae.id} ({sae.name})",
            "dataset": f"{dataset.id} ({dataset.spec})",
            "model": str(self.config.model),
            "hook": str(self.config.hook),
        }
        ray.init(job_config=JobConfig(metadata=metadata), log_to_driver=True)

    def _gpus_per_actor(self) -> float:
        import ray

        if self.config.gpus_per_actor is not None:
            return self.config.gpus_per_actor
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def _pipeline(
        self, sae: SAE, spec: CorpusSpec, window_config: WindowConfig, plan: CorpusPlan
    ) -> Any:  # a ray.data.Dataset
        from saeray.extraction.pipeline import ActorResources, build_dataset

        config = self.config
        gpus = self._gpus_per_actor()
        encoder = EncoderSpec(
            model=str(config.model),
            hook=str(config.hook),
            sae_path=sae.path,
            sae_format=sae.format,
            sae_path_in_repo=sae.path_in_repo,
            sae_revision=sae.revision,
            d_sae=sae.d_sae,
            device="cuda" if gpus > 0 else "cpu",
            dtype=config.dtype,
            torch_threads=config.torch_threads
            or max(1, int(config.cpus_per_actor) // config.concurrent_batches),
            include_special_tokens=config.include_special_tokens,
            top_k=config.top_k,
            quantile_samples=config.quantile_samples,
            tracked_tokens=config.tracked_tokens,
        )
        actors = ActorResources(
            num_actors=config.num_actors,
            concurrent_batches=config.concurrent_batches,
            num_gpus=gpus,
            num_cpus=config.cpus_per_actor,
            resources=dict(config.actor_resources),
            max_restarts=config.max_restarts,
        )
        _warn_if_actors_starve_reading(actors)
        return build_dataset(
            spec, str(config.model), window_config, plan, encoder, config.batch_size, actors
        )

    def _logit_effects(self, sae: SAE) -> LogitEffects | None:
        """W_dec @ W_U as a Ray task where the actors ran (GPU if they had one)."""
        import ray

        from saeray.extraction.logit_effects import compute_logit_effects

        gpus = 1 if self._gpus_per_actor() > 0 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus)(compute_logit_effects)
        return ray.get(
            task.remote(
                str(self.config.model),
                sae.path,
                sae_format=sae.format,
                sae_path_in_repo=sae.path_in_repo,
                sae_revision=sae.revision,
                n=self.config.logit_effects,
                device="cuda" if gpus else "cpu",
            )
        )

    def _statistics(
        self, accumulator: FeatureAccumulator, results: FeatureResults, seconds: float
    ) -> dict[str, Any]:
        """What the run did, for the row. Steady throughput leaves out the start-up (actors
        loading the model) up to the first partial."""
        startup, first_tokens = self.first_partial or (seconds, 0)
        steady_seconds = seconds - startup
        return {
            "tokens": accumulator.tokens_seen,
            "tokens_counted": results.tokens_counted,
            "windows": results.windows,
            "features": len(results.firing_count),
            "dead_features": int(results.is_dead.sum()),
            "extract_seconds": round(seconds, 3),
            "startup_seconds": round(startup, 3),
            "tokens_per_second": accumulator.tokens_seen / seconds if seconds else 0.0,
            "steady_tokens_per_second": (
                (accumulator.tokens_seen - first_tokens) / steady_seconds
                if steady_seconds > 0
                else 0.0
            ),
            "actors": len(results.workers),
            "nodes": sorted({worker.split("/")[0] for worker in results.workers}),
            # How evenly the pool shared the work ("<node id>/<actor id>": tokens encoded).
            "tokens_per_actor": dict(sorted(results.workers.items())),
        }


def _warn_if_actors_starve_reading(actors: ActorResources) -> None:
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if actors.num_gpus == 0 and actors.num_actors * actors.num_cpus > cpus - 1:
        log.warning(
            "%d actors x %s CPUs leave less than one of the cluster's %s CPUs for reading and "
            "tokenising; the job waits until the cluster grows. Lower num_actors or "
            "cpus_per_actor (fractions are fine)",
            actors.num_actors,
            actors.num_cpus,
            cpus,
        )


def _vocabulary(tokenizer: Any, results: FeatureResults, logits: LogitEffects | None) -> np.ndarray:
    """Escaped text of every token id the results mention (and the tokenizer knows)."""
    from saeray.extraction.tokens import vocabulary_strings

    largest = [len(tokenizer) - 1, results.top.windows.max_token()]
    if len(results.top_tokens.counts):
        largest.append(int(results.top_tokens.counts.token.max()))
    if logits is not None:
        largest.append(int(max(logits.promoted_ids.max(), logits.suppressed_ids.max())))
    return vocabulary_strings(tokenizer, max(largest) + 1)
