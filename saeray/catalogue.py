"""The catalogue: register, list, get and delete models, SAEs and datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from sqlmodel import Session, SQLModel, delete, select

from saeray import paths
from saeray.db.tables import (
    SAE,
    Dataset,
    ExtractionJob,
    Feature,
    FeatureLabel,
    LabelingJob,
    Model,
    SAESource,
    TrainingJob,
)
from saeray.errors import ConflictError, InvalidInputError, NotFoundError
from saeray.lifecycle import ACTIVE

Row = TypeVar("Row", bound=SQLModel)


def get(session: Session, table: type[Row], row_id: str | int) -> Row:
    """The row with ``row_id`` or NotFoundError naming the kind and id."""
    row = session.get(table, row_id)
    if row is None:
        kind = table.__tablename__.rstrip("s").replace("_", " ")  # type: ignore[attr-defined]
        raise NotFoundError(f"no {kind} with id {row_id!r}; list them to see what exists")
    return row


def list_rows(
    session: Session, table: type[Row], *, limit: int = 100, offset: int = 0
) -> list[Row]:
    newest_first = table.created_at.desc()  # type: ignore[attr-defined]
    statement = select(table).order_by(newest_first).offset(offset).limit(limit)
    return list(session.exec(statement))


def _add(session: Session, row: Row) -> Row:
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


# --- models -------------------------------------------------------------------------------


def register_model(
    session: Session,
    name: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Model:
    """Register a Hugging Face model (hub id or local folder); its config is read now."""
    existing = session.exec(select(Model).where(Model.name == name)).first()
    if existing is not None:
        return existing
    from saeray.lm import describe_model

    info = describe_model(name, revision=revision, trust_remote_code=trust_remote_code)
    return _add(
        session,
        Model(
            name=name,
            revision=revision,
            trust_remote_code=trust_remote_code,
            architecture=info.architecture,
            d_model=info.d_model,
            n_layers=info.n_layers,
        ),
    )


def delete_model(session: Session, model_id: str) -> None:
    session.delete(get(session, Model, model_id))
    session.commit()


# --- SAEs ---------------------------------------------------------------------------------


def register_sae(
    session: Session,
    path: str,
    *,
    name: str | None = None,
    path_in_repo: str | None = None,
    revision: str | None = None,
    format: str | None = None,
    source: SAESource | None = None,
    model_name: str | None = None,
    hook_point: str | None = None,
    meta: dict | None = None,
) -> SAE:
    """Register an SAE after reading its files, so a broken SAE is refused at the door.

    ``path`` is a local file or folder, a Hugging Face repo id with ``path_in_repo``, or a
    store URI (``s3://bucket/folder``). ``model_name`` and ``hook_point`` override what the
    SAE's own files say.
    """
    from saeray.sae import describe_sae
    from saeray.sae.stored import is_store_uri

    if source is None:
        if is_store_uri(path):
            source = SAESource.STORAGE
        else:
            source = SAESource.LOCAL if paths.exists(path) else SAESource.HUGGINGFACE
    if source == SAESource.HUGGINGFACE and path_in_repo is None and "://" not in path:
        path = f"hf://{path}"  # a bare repo id means the repo's root, never a local path
    info = describe_sae(path, path_in_repo=path_in_repo, revision=revision, format=format)
    hook = hook_point or info.hook_name
    if hook is None:
        raise InvalidInputError(
            f"the SAE at {path} does not say which hook point it reads; pass hook_point="
            "(e.g. 'blocks.3.hook_resid_post')"
        )
    if source != SAESource.HUGGINGFACE and "://" not in path:
        path = str(Path(path).resolve())  # a local path: recorded absolute
    return _add(
        session,
        SAE(
            name=name or (path_in_repo or Path(path).name),
            source=source,
            format=info.format,
            architecture=info.architecture,
            path=path,
            path_in_repo=path_in_repo,
            revision=revision,
            model_name=model_name or info.model_name,
            hook_point=hook,
            hook_layer=info.hook_layer,
            d_in=info.d_in,
            d_sae=info.d_sae,
            meta=meta or {},
        ),
    )


def extractions_of(session: Session, sae_id: str) -> list[ExtractionJob]:
    return list(session.exec(select(ExtractionJob).where(ExtractionJob.sae_id == sae_id)))


def delete_extraction(session: Session, extraction_id: str) -> None:
    """Delete an extraction with its features and every labeling job and label of it."""
    extraction = get(session, ExtractionJob, extraction_id)
    if extraction.status in ACTIVE:
        raise ConflictError(
            f"extraction {extraction_id} is {extraction.status}; cancel it before deleting"
        )
    feature_ids = select(Feature.id).where(Feature.extraction_id == extraction_id)
    session.exec(delete(FeatureLabel).where(FeatureLabel.feature_id.in_(feature_ids)))  # type: ignore[union-attr]
    session.exec(delete(LabelingJob).where(LabelingJob.extraction_id == extraction_id))  # type: ignore[arg-type]
    session.exec(delete(Feature).where(Feature.extraction_id == extraction_id))  # type: ignore[arg-type]
    session.delete(extraction)
    session.commit()


def delete_sae(session: Session, sae_id: str, *, cascade: bool = False) -> None:
    """Delete an SAE; refused while extractions read it, unless ``cascade`` deletes them too."""
    sae = get(session, SAE, sae_id)
    extractions = extractions_of(session, sae_id)
    if extractions and not cascade:
        raise ConflictError(
            f"SAE {sae_id} has {len(extractions)} extraction(s) "
            f"({', '.join(e.id for e in extractions[:3])}); delete them first or pass cascade"
        )
    for extraction in extractions:
        delete_extraction(session, extraction.id)
    for training in session.exec(select(TrainingJob).where(TrainingJob.sae_id == sae_id)):
        training.sae_id = None  # the training run stays on record; its product is gone
        session.add(training)
    session.delete(sae)
    session.commit()


# --- datasets -----------------------------------------------------------------------------


def register_dataset(
    session: Session, spec: str, *, name: str | None = None, text_field: str = "text"
) -> Dataset:
    """Register a corpus by its spec (builtin:..., a path or glob, hf:name:split)."""
    from saeray.corpus import list_shards, parse_corpus_spec

    # Refuse a malformed spec or a missing file at the door, not in a job hours later.
    list_shards(parse_corpus_spec(spec, text_field=text_field))
    existing = session.exec(
        select(Dataset).where(Dataset.spec == spec, Dataset.text_field == text_field)
    ).first()
    if existing is not None:
        return existing
    return _add(session, Dataset(name=name or spec, spec=spec, text_field=text_field))


def delete_dataset(session: Session, dataset_id: str) -> None:
    dataset = get(session, Dataset, dataset_id)
    used = session.exec(
        select(ExtractionJob.id).where(ExtractionJob.dataset_id == dataset_id)
    ).first()
    if used is not None:
        raise ConflictError(
            f"dataset {dataset_id} is read by extraction {used}; delete that extraction first"
        )
    session.delete(dataset)
    session.commit()
