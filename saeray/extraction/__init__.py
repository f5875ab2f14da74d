"""Feature extraction: run a model over a corpus, encode through an SAE, and keep exact
statistics and examples of every feature (unlabeled). See docs in each module:

- ``config``: ExtractionConfig, every setting and its default;
- ``job``: create_extraction_job / run_extraction_job, the row's lifecycle;
- ``run``, ``pipeline``, ``encoder_actor``: the Ray Data pipeline and its actors;
- ``summarize``, ``partials``, ``candidates``, ``tokens``: exactly mergeable partial results;
- ``persist``, ``progress``, ``logit_effects``.
"""

from saeray.extraction.config import ExtractionConfig
from saeray.extraction.job import create_extraction_job, run_extraction_job
from saeray.lifecycle import JobCancelled

__all__ = ["ExtractionConfig", "JobCancelled", "create_extraction_job", "run_extraction_job"]
