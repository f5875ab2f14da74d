"""Request and response bodies of the HTTP API: the OpenAPI schema is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from deployments.config_models import request_model
from saeray.extraction.config import ExtractionConfig
from saeray.labeling.config import LabelingConfig
from saeray.lifecycle import JobStatus
from saeray.training.config import TrainingConfig

SourceType = Literal["trained", "external"]
NAME_MAX_BYTES = 255  # one file name, on every common filesystem
PATH_MAX_BYTES = 4096


def check_path_text(value: str) -> str:
    """A string the server may look up as a file path: refused here (422) when no
    filesystem could hold it, instead of failing deep inside a lookup."""
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    if len(value.encode()) > PATH_MAX_BYTES or any(
        len(part.encode()) > NAME_MAX_BYTES for part in value.split("/")
    ):
        raise ValueError(
            f"too long for a path: at most {PATH_MAX_BYTES} bytes, {NAME_MAX_BYTES} per name"
        )
    return value


PathText = Annotated[str, Field(min_length=1), AfterValidator(check_path_text)]
JobKindName = Literal["extraction", "labeling", "training"]


class Row(BaseModel):
    """A response read from a database row's attributes."""

    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong and how to fix it; a list for a body that fails validation"
    )


class HealthOut(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


# --- catalogue -------------------------------------------------------------------------------


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PathText = Field(description="Hugging Face hub id or a local model folder")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag, commit)")
    trust_remote_code: bool = False


class ModelOut(Row):
    id: str
    name: str
    revision: str | None
    architecture: str | None
    d_model: int | None
    n_layers: int | None
    trust_remote_code: bool
    meta: dict[str, Any]
    created_at: datetime


class SAEIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: PathText = Field(
        description="A local SAE file or folder, a Hugging Face repo id, or a store URI (s3://...)"
    )
    path_in_repo: PathText | None = Field(default=None, description="Folder inside the hub repo")
    revision: str | None = None
    name: str | None = Field(default=None, description="Display name; default from the path")
    format: str | None = Field(default=None, description="SAE file format; default: detected")
    model_name: str | None = Field(default=None, description="Overrides the SAE's own files")
    hook_point: str | None = Field(default=None, description="Overrides the SAE's own files")


class SAEOut(Row):
    id: str
    name: str
    source: str = Field(description="trained | huggingface | local | storage")
    source_type: SourceType
    format: str
    architecture: str
    path: str
    path_in_repo: str | None
    revision: str | None
    model_name: str | None
    hook_point: str | None
    hook_layer: int | None
    d_in: int
    d_sae: int
    meta: dict[str, Any]
    created_at: datetime


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: PathText = Field(
        description="builtin:<name>, a text/JSONL file or glob, or hf:<name>:<split>"
    )
    name: str | None = None
    text_field: str = Field(default="text", min_length=1)


class DatasetOut(Row):
    id: str
    name: str
    spec: str
    text_field: str
    meta: dict[str, Any]
    created_at: datetime


# --- jobs ------------------------------------------------------------------------------------


class JobOut(Row):
    id: str
    status: JobStatus
    progress: float = Field(description="0 to 1")
    error: str | None
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class JobStatusOut(Row):
    """The live state of a job of any kind; also the payload of every status event."""

    id: str
    kind: JobKindName
    status: JobStatus
    progress: float
    error: str | None
    terminal: bool = Field(description="True once the job has ended; no event follows")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class LabelingJobBrief(Row):
    id: str
    status: JobStatus
    progress: float
    provider: str
    model: str
    created_at: datetime


class LabelingSummary(BaseModel):
    status: Literal["unlabeled", "labeling", "partially_labeled", "labeled"]
    features_total: int
    features_labeled: int = Field(description="Features with an active label")
    latest_job: LabelingJobBrief | None


class ExtractionOut(JobOut):
    sae_id: str
    sae_name: str
    dataset_id: str
    source_type: SourceType = Field(description="trained here, or an external SAE")
    model_name: str | None
    hook_point: str | None
    tokens_planned: int
    tokens_processed: int
    tokens_per_second: float
    statistics: dict[str, Any]
    labeling: LabelingSummary


ExtractionConfigIn = request_model(
    ExtractionConfig,
    "ExtractionConfigIn",
    "Extraction settings; every one has a default (saeray.extraction.config).",
)


class ExtractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, description="The dataset to read")
    config: ExtractionConfigIn = Field(default_factory=ExtractionConfigIn)  # type: ignore[valid-type]


class LabelingJobOut(JobOut):
    extraction_id: str
    provider: str
    model: str
    base_url: str | None
    prompt_template_id: str | None
    features_total: int
    features_labeled: int
    features_failed: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    budget_usd: float | None
    scores: dict[str, Any]


LabelingConfigIn = request_model(
    LabelingConfig,
    "LabelingConfigIn",
    "A labeling run's settings (saeray.labeling.config); only ``provider`` is required. "
    "No API key: providers read theirs from the cluster's environment.",
    types={"fallback": list[str]},
    descriptions={
        "fallback": "Providers tried in order for a feature once the primary has given up "
        "on it, each written provider:model or provider:model@base_url."
    },
)

RelabelIn = create_model(
    "RelabelIn",
    __base__=LabelingConfigIn,
    __doc__="A new labeling run over features that already have labels.",
    target=(
        Literal["flagged", "failed", "all"],
        Field(
            default="flagged",
            description="flagged: features whose active label is flagged for review; "
            "failed: features some labeling job failed on that have no active label; "
            "all: every live feature. Narrowed further by ``features`` when given.",
        ),
    ),
)


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature_ids: list[int] | None = Field(
        default=None, description="Only these features (row ids); default all the job labeled"
    )
    only_unset: bool = Field(default=False, description="Only features with no active label")


class ActivateOut(BaseModel):
    labeling_job_id: str
    features_changed: int


TrainingConfigIn = request_model(
    TrainingConfig,
    "TrainingConfigIn",
    "A TopK SAE training run's settings (saeray.training.config); d_sae, k and tokens are "
    "required.",
)


class TrainingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: PathText = Field(description="Hub id or local folder of the model")
    hook_point: str = Field(min_length=1, description="e.g. blocks.3.hook_resid_post")
    dataset_id: str = Field(min_length=1, description="The dataset to stream activations of")
    name: str | None = Field(default=None, description="Name of the SAE it will register")
    config: TrainingConfigIn  # type: ignore[valid-type]


class TrainingJobOut(JobOut):
    model_name: str
    hook_point: str
    dataset_id: str
    sae_id: str | None
    tokens_planned: int
    tokens_processed: int
    metrics: dict[str, Any]


# --- features --------------------------------------------------------------------------------


class FeatureSummary(BaseModel):
    id: int
    extraction_id: str
    index: int
    name: str
    frequency: float
    firing_count: int
    max_activation: float
    mean_activation: float
    is_dead: bool
    label: str | None = Field(description="The active label")
    category: str | None
    confidence: float | None
    flagged: bool


class FeaturePage(BaseModel):
    extraction_id: str
    total: int = Field(description="Features matching the search and filter")
    limit: int
    offset: int
    items: list[FeatureSummary]


class ExampleOut(BaseModel):
    kind: str = Field(description="top (max-activating) or quantile")
    rank: int
    max_activation: float
    doc_index: int
    window_index: int
    tokens: list[str]
    token_ids: list[int]
    activations: list[float] = Field(description="The feature's activation on every token")


class LabelOut(Row):
    id: int
    labeling_job_id: str | None = Field(description="None for a manual label")
    label: str | None
    category: str | None
    confidence: float | None
    label_source: str = Field(description="llm | offline | user")
    provider: str | None
    model: str | None
    flagged: bool
    scores: dict[str, Any]
    error: str | None
    created_at: datetime
    active: bool = False


class FeatureDetail(FeatureSummary):
    std_activation: float
    top_tokens: dict[str, Any]
    histogram: dict[str, Any]
    logit_effects: dict[str, Any]
    examples: list[ExampleOut]
    labels: list[LabelOut] = Field(description="Label history, newest first")


class ManualLabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=500)
    category: str | None = Field(default=None, max_length=100)


class ActiveLabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_id: int = Field(ge=1, le=2**31 - 1, description="A label row of this feature")
