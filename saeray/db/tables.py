"""The data model (DESIGN.md) as SQLModel tables.

Ids are short prefixed strings (``sae_3f9a...``) so that a job row's id can double as
its Ray job submission id. Features and labels use integer keys: there are many of them.
Bulky per-token examples live in Parquet under the artifact store, not here. No column
ever holds an API key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def json_column() -> Any:
    return Field(default_factory=dict, sa_type=JSON, nullable=False)


class SAESource(StrEnum):
    TRAINED = "trained"
    HUGGINGFACE = "huggingface"
    LOCAL = "local"
    STORAGE = "storage"  # a store URI (s3://, gs://, file://), read by every node


class LabelSource(StrEnum):
    LLM = "llm"
    OFFLINE = "offline"
    USER = "user"


class Model(SQLModel, table=True):
    __tablename__ = "models"

    id: str = Field(default_factory=lambda: new_id("mdl"), primary_key=True)
    name: str = Field(index=True, unique=True, description="Hub id or local folder")
    revision: str | None = None
    architecture: str | None = None
    d_model: int | None = None
    n_layers: int | None = None
    trust_remote_code: bool = False
    meta: dict[str, Any] = json_column()
    created_at: datetime = Field(default_factory=utcnow)


class SAE(SQLModel, table=True):
    __tablename__ = "saes"

    id: str = Field(default_factory=lambda: new_id("sae"), primary_key=True)
    name: str = Field(index=True)
    source: str = Field(description="trained | huggingface | local (SAESource)")
    format: str
    architecture: str
    path: str = Field(description="Local file/folder, or a Hugging Face repo id")
    path_in_repo: str | None = None
    revision: str | None = None
    model_name: str | None = None
    hook_point: str | None = None
    hook_layer: int | None = None
    d_in: int
    d_sae: int
    meta: dict[str, Any] = json_column()
    created_at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"

    id: str = Field(default_factory=lambda: new_id("ds"), primary_key=True)
    name: str = Field(index=True)
    spec: str = Field(description="Corpus spec: builtin:..., a path or glob, hf:name:split")
    text_field: str = "text"
    meta: dict[str, Any] = json_column()
    created_at: datetime = Field(default_factory=utcnow)


class JobFields(SQLModel):
    """Columns every job kind shares; the lifecycle (saeray.lifecycle) moves them."""

    status: str = Field(default="queued", index=True)
    progress: float = 0.0
    error: str | None = Field(default=None, sa_type=Text)
    config: dict[str, Any] = json_column()
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


class ExtractionJob(JobFields, table=True):
    __tablename__ = "extraction_jobs"

    id: str = Field(default_factory=lambda: new_id("ext"), primary_key=True)
    sae_id: str = Field(foreign_key="saes.id", index=True)
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    model_name: str | None = None
    hook_point: str | None = None
    tokens_planned: int = 0
    tokens_processed: int = 0
    tokens_per_second: float = 0.0
    artifact_uri: str | None = None
    statistics: dict[str, Any] = json_column()


class Feature(SQLModel, table=True):
    __tablename__ = "features"
    __table_args__ = (
        UniqueConstraint("extraction_id", "index", name="uq_features_extraction_index"),
        Index("ix_features_extraction_frequency", "extraction_id", "frequency"),
        Index("ix_features_extraction_max_activation", "extraction_id", "max_activation"),
    )

    id: int | None = Field(default=None, primary_key=True)
    extraction_id: str = Field(foreign_key="extraction_jobs.id")
    index: int
    name: str
    frequency: float
    firing_count: int
    max_activation: float
    mean_activation: float
    std_activation: float
    is_dead: bool = Field(default=False)
    top_tokens: dict[str, Any] = json_column()
    histogram: dict[str, Any] = json_column()
    logit_effects: dict[str, Any] = json_column()
    # No foreign key: features and feature_labels would reference each other in a cycle.
    # Deleting a labeling job clears the ids that pointed at its labels.
    active_label_id: int | None = Field(default=None, index=True)


class PromptTemplate(SQLModel, table=True):
    __tablename__ = "prompt_templates"

    id: str = Field(default_factory=lambda: new_id("tpl"), primary_key=True)
    name: str = Field(index=True, unique=True)
    system_prompt: str = Field(sa_type=Text, nullable=False)
    user_template: str = Field(sa_type=Text, nullable=False)
    created_at: datetime = Field(default_factory=utcnow)


class LabelingJob(JobFields, table=True):
    __tablename__ = "labeling_jobs"

    id: str = Field(default_factory=lambda: new_id("lab"), primary_key=True)
    extraction_id: str = Field(foreign_key="extraction_jobs.id", index=True)
    provider: str
    model: str
    base_url: str | None = None
    prompt_template_id: str | None = Field(default=None, foreign_key="prompt_templates.id")
    features_total: int = 0
    features_labeled: int = 0
    features_failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    budget_usd: float | None = None
    scores: dict[str, Any] = json_column()


class FeatureLabel(SQLModel, table=True):
    """One label of one feature. Labels from a job are unique per (job, feature), so a
    resumed job upserts; manual labels have no job. A feature's history is all its rows."""

    __tablename__ = "feature_labels"
    __table_args__ = (
        UniqueConstraint("labeling_job_id", "feature_id", name="uq_feature_labels_job_feature"),
    )

    id: int | None = Field(default=None, primary_key=True)
    labeling_job_id: str | None = Field(default=None, foreign_key="labeling_jobs.id", index=True)
    feature_id: int = Field(foreign_key="features.id", index=True)
    label: str | None = Field(default=None, index=True)
    category: str | None = None
    confidence: float | None = None
    label_source: str = Field(default=LabelSource.LLM, description="llm | offline | user")
    provider: str | None = None
    model: str | None = None
    flagged: bool = False
    scores: dict[str, Any] = json_column()
    raw_response: str | None = Field(default=None, sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class TrainingJob(JobFields, table=True):
    __tablename__ = "training_jobs"

    id: str = Field(default_factory=lambda: new_id("trn"), primary_key=True)
    model_name: str
    hook_point: str
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    sae_id: str | None = Field(default=None, foreign_key="saes.id")
    tokens_planned: int = 0
    tokens_processed: int = 0
    metrics: dict[str, Any] = json_column()
