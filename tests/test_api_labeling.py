"""Labeling over HTTP: start, rerun some features, estimate, list, compare, activate,
flagged, delete; manual labels and choosing a label from the history. SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from saeray.db.engine import open_engine
from saeray.db.tables import Feature, FeatureLabel, LabelingJob
from tests.api_helpers import RecordingBackend, api_client, seed


@pytest.fixture
def seeded(database_url):
    return seed(database_url)


@pytest.fixture
def backend():
    return RecordingBackend()


@pytest.fixture
def client(seeded, backend):
    with api_client(backend) as client:
        yield client


OFFLINE = {"provider": "offline"}


def test_label_features_writes_a_queued_job_and_submits_it(client, seeded, backend):
    url = f"/api/v1/extractions/{seeded.extraction_id}/label-features"
    response = client.post(url, json=OFFLINE | {"only_unlabeled": True})
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["status"], job["provider"], job["features_total"]) == ("queued", "offline", 1)
    assert backend.submitted[job["id"]][0] == f"python -m jobs.label --job-id {job['id']}"
    listed = client.get("/api/v1/labeling-jobs", params={"extraction_id": seeded.extraction_id})
    assert [row["id"] for row in listed.json()][0] == job["id"]
    assert client.get(f"/api/v1/labeling-jobs/{job['id']}").json()["status"] == "queued"
    state = client.get(f"/api/v1/extractions/{seeded.extraction_id}").json()["labeling"]
    assert state["status"] == "labeling" and state["latest_job"]["id"] == job["id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"provider": "nope"}, 422, "unknown provider"),
        ({"provider": "offline", "api_key": "sk-1"}, 422, "api_key"),
        ({"provider": "openai-compatible", "model": "m"}, 422, "base URL"),
        ({"provider": "offline", "features": "9-x"}, 422, "9-x"),
        ({}, 422, "provider"),
    ],
)
def test_bad_labeling_configs_are_422_naming_the_problem(client, seeded, body, status, words):
    url = f"/api/v1/extractions/{seeded.extraction_id}/label-features"
    response = client.post(url, json=body)
    assert response.status_code == status, response.text
    assert words in response.text


def test_labeling_an_unknown_or_unfinished_extraction(client, seeded, database_url):
    url = "/api/v1/extractions/ext_nope/label-features"
    assert client.post(url, json=OFFLINE).status_code == 404


def test_relabel_the_flagged_features(client, seeded):
    url = f"/api/v1/extractions/{seeded.extraction_id}/relabel"
    response = client.post(url, json=OFFLINE)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["features_total"] == 1 and job["config"]["features"] == "1-1"
    everything = client.post(url, json=OFFLINE | {"target": "all", "features": "0-3"}).json()
    assert everything["features_total"] == 3  # 0, 1, 3: feature 2 is dead
    nothing = client.post(url, json=OFFLINE | {"target": "failed"})
    assert nothing.status_code == 422 and "nothing to relabel" in nothing.json()["detail"]


def test_estimate_before_starting(client, seeded):
    url = f"/api/v1/extractions/{seeded.extraction_id}/labeling-estimate"
    response = client.post(url, json=OFFLINE)
    assert response.status_code == 200, response.text
    estimate = response.json()
    assert estimate["features"] == 4 and estimate["input_tokens"] > 0
    priced = client.post(url, json={"provider": "openai", "model": "gpt-4o-mini"}).json()
    assert priced["usd"] > 0


def add_second_run(database_url, seeded) -> str:
    """A second run labeling features 0 and 1: 0 the same, 1 differently."""
    with Session(open_engine(database_url), expire_on_commit=False) as session:
        job = LabelingJob(
            extraction_id=seeded.extraction_id, provider="offline", model="m", status="completed"
        )
        session.add(job)
        session.flush()
        for index, text in ((0, "Articles"), (1, "pets and animals")):
            session.add(
                FeatureLabel(
                    labeling_job_id=job.id, feature_id=seeded.feature_ids[index], label=text
                )
            )
        session.commit()
        return job.id


def test_compare_two_runs(client, seeded, database_url):
    second = add_second_run(database_url, seeded)
    response = client.get(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}/compare/{second}")
    assert response.status_code == 200, response.text
    comparison = response.json()
    assert comparison["features_compared"] == 2 and comparison["exact_agreement"] == 0.5
    assert comparison["rows"][0]["feature_index"] == 1  # the disagreement first
    missing = client.get(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}/compare/lab_nope")
    assert missing.status_code == 404


def test_activate_a_runs_labels(client, seeded, database_url):
    second = add_second_run(database_url, seeded)
    response = client.post(f"/api/v1/labeling-jobs/{second}/activate", json={})
    assert response.json() == {"labeling_job_id": second, "features_changed": 2}
    feature = client.get(f"/api/v1/features/{seeded.feature_ids[1]}").json()
    assert feature["label"] == "pets and animals"
    assert [label["active"] for label in feature["labels"]].count(True) == 1
    assert client.post("/api/v1/labeling-jobs/lab_nope/activate", json={}).status_code == 404


def test_flagged_labels_of_a_run(client, seeded):
    response = client.get(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}/flagged")
    assert [(row["label"], row["active"]) for row in response.json()] == [("animals", True)]


def test_delete_a_run_clears_the_labels_it_showed(client, seeded, database_url):
    assert client.delete(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}").status_code == 204
    assert client.get(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}").status_code == 404
    with Session(open_engine(database_url)) as session:
        assert session.get(Feature, seeded.feature_ids[1]).active_label_id is None
        assert session.get(Feature, seeded.feature_ids[3]).active_label_id is not None


def test_a_manual_label_becomes_active_and_joins_the_history(client, seeded):
    url = f"/api/v1/features/{seeded.feature_ids[4]}"
    response = client.patch(url, json={"label": "  percent   signs ", "category": "symbols"})
    assert response.status_code == 200, response.text
    feature = response.json()
    assert feature["label"] == "percent signs"
    (label,) = feature["labels"]
    assert (label["label_source"], label["active"]) == ("user", True)
    assert client.patch(url, json={"label": ""}).status_code == 422
    assert client.patch(url, json={"label": "x", "extra": 1}).status_code == 422
    assert client.patch("/api/v1/features/999999", json={"label": "x"}).status_code == 404


def test_choose_a_label_from_the_history(client, seeded):
    url = f"/api/v1/features/{seeded.feature_ids[0]}"
    old = client.get(url).json()["labels"][1]
    response = client.put(f"{url}/active-label", json={"label_id": old["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "old article label"
    elsewhere = client.put(f"{url}/active-label", json={"label_id": seeded.label_ids[1]})
    assert elsewhere.status_code == 422
