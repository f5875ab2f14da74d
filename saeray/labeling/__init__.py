"""Labeling: name every feature of an extraction with an LLM (or offline), as its own Ray
job, any number of times per extraction.

The library API (what the CLI, the job entrypoint and the HTTP API call):

- ``create_labeling_job(session, extraction_id, config, job_id=None) -> LabelingJob``
- ``run_labeling_job(job_id, stop=None) -> LabelingJob``
- ``estimate_labeling_cost(session, extraction_id, config) -> CostEstimate``
- ``set_manual_label``, ``activate_labels``, ``activate_label``, ``flagged_labels``,
  ``delete_labeling_job``, ``compare_labeling_jobs``, ``create_prompt_template``

Names are imported on first use, so that a labeler actor, which imports only
``saeray.labeling.pool``, does not load the database, Parquet and Ray-driver code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CostEstimate": "estimate",
    "estimate_labeling_cost": "estimate",
    "LabelComparison": "compare",
    "compare_labeling_jobs": "compare",
    "LabelingConfig": "config",
    "ProviderSpec": "config",
    "create_labeling_job": "store",
    "run_labeling_job": "pipeline",
    "create_prompt_template": "prompt",
    "activate_label": "review",
    "activate_labels": "review",
    "delete_labeling_job": "review",
    "flagged_labels": "review",
    "set_manual_label": "review",
}

__all__ = [
    "CostEstimate",
    "LabelComparison",
    "LabelingConfig",
    "ProviderSpec",
    "activate_label",
    "activate_labels",
    "compare_labeling_jobs",
    "create_labeling_job",
    "create_prompt_template",
    "delete_labeling_job",
    "estimate_labeling_cost",
    "flagged_labels",
    "run_labeling_job",
    "set_manual_label",
]

if TYPE_CHECKING:
    from saeray.labeling.compare import LabelComparison, compare_labeling_jobs
    from saeray.labeling.config import LabelingConfig, ProviderSpec
    from saeray.labeling.estimate import CostEstimate, estimate_labeling_cost
    from saeray.labeling.pipeline import run_labeling_job
    from saeray.labeling.prompt import create_prompt_template
    from saeray.labeling.review import (
        activate_label,
        activate_labels,
        delete_labeling_job,
        flagged_labels,
        set_manual_label,
    )
    from saeray.labeling.store import create_labeling_job


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'saeray.labeling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"saeray.labeling.{_EXPORTS[name]}"), name)
