"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:36:52.896352
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("spec", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("text_field", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_name"), ["name"], unique=False)

    op.create_table(
        "models",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("revision", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("architecture", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("d_model", sa.Integer(), nullable=True),
        sa.Column("n_layers", sa.Integer(), nullable=True),
        sa.Column("trust_remote_code", sa.Boolean(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_models_name"), ["name"], unique=True)

    op.create_table(
        "prompt_templates",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("user_template", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_templates_name"), ["name"], unique=True)

    op.create_table(
        "saes",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("architecture", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("path_in_repo", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("revision", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("hook_point", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("hook_layer", sa.Integer(), nullable=True),
        sa.Column("d_in", sa.Integer(), nullable=False),
        sa.Column("d_sae", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("saes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saes_name"), ["name"], unique=False)

    op.create_table(
        "extraction_jobs",
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sae_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("dataset_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("hook_point", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tokens_planned", sa.Integer(), nullable=False),
        sa.Column("tokens_processed", sa.Integer(), nullable=False),
        sa.Column("tokens_per_second", sa.Float(), nullable=False),
        sa.Column("artifact_uri", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("statistics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sae_id"],
            ["saes.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("extraction_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_extraction_jobs_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_extraction_jobs_sae_id"), ["sae_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_extraction_jobs_status"), ["status"], unique=False)

    op.create_table(
        "training_jobs",
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("hook_point", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("dataset_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sae_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tokens_planned", sa.Integer(), nullable=False),
        sa.Column("tokens_processed", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sae_id"],
            ["saes.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_training_jobs_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_training_jobs_status"), ["status"], unique=False)

    op.create_table(
        "features",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extraction_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("frequency", sa.Float(), nullable=False),
        sa.Column("firing_count", sa.Integer(), nullable=False),
        sa.Column("max_activation", sa.Float(), nullable=False),
        sa.Column("mean_activation", sa.Float(), nullable=False),
        sa.Column("std_activation", sa.Float(), nullable=False),
        sa.Column("is_dead", sa.Boolean(), nullable=False),
        sa.Column("top_tokens", sa.JSON(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.Column("logit_effects", sa.JSON(), nullable=False),
        sa.Column("active_label_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["extraction_id"],
            ["extraction_jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("extraction_id", "index", name="uq_features_extraction_index"),
    )
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_features_active_label_id"), ["active_label_id"], unique=False
        )
        batch_op.create_index(
            "ix_features_extraction_frequency", ["extraction_id", "frequency"], unique=False
        )
        batch_op.create_index(
            "ix_features_extraction_max_activation",
            ["extraction_id", "max_activation"],
            unique=False,
        )

    op.create_table(
        "labeling_jobs",
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("extraction_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("base_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("prompt_template_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("features_total", sa.Integer(), nullable=False),
        sa.Column("features_labeled", sa.Integer(), nullable=False),
        sa.Column("features_failed", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("budget_usd", sa.Float(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extraction_id"],
            ["extraction_jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["prompt_template_id"],
            ["prompt_templates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("labeling_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_labeling_jobs_extraction_id"), ["extraction_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_labeling_jobs_status"), ["status"], unique=False)

    op.create_table(
        "feature_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("labeling_job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("feature_id", sa.Integer(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("label_source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("raw_response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["features.id"],
        ),
        sa.ForeignKeyConstraint(
            ["labeling_job_id"],
            ["labeling_jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("labeling_job_id", "feature_id", name="uq_feature_labels_job_feature"),
    )
    with op.batch_alter_table("feature_labels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feature_labels_feature_id"), ["feature_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_feature_labels_label"), ["label"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_feature_labels_labeling_job_id"), ["labeling_job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("feature_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feature_labels_labeling_job_id"))
        batch_op.drop_index(batch_op.f("ix_feature_labels_label"))
        batch_op.drop_index(batch_op.f("ix_feature_labels_feature_id"))

    op.drop_table("feature_labels")
    with op.batch_alter_table("labeling_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labeling_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_labeling_jobs_extraction_id"))

    op.drop_table("labeling_jobs")
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.drop_index("ix_features_extraction_max_activation")
        batch_op.drop_index("ix_features_extraction_frequency")
        batch_op.drop_index(batch_op.f("ix_features_active_label_id"))

    op.drop_table("features")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_training_jobs_dataset_id"))

    op.drop_table("training_jobs")
    with op.batch_alter_table("extraction_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_extraction_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_extraction_jobs_sae_id"))
        batch_op.drop_index(batch_op.f("ix_extraction_jobs_dataset_id"))

    op.drop_table("extraction_jobs")
    with op.batch_alter_table("saes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saes_name"))

    op.drop_table("saes")
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_templates_name"))

    op.drop_table("prompt_templates")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_models_name"))

    op.drop_table("models")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_name"))

    op.drop_table("datasets")
