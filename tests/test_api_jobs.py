"""Job status over HTTP: the row merged with Ray's view (a dead driver is a failed job),
cancel, the event stream, and starting training. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select

from saeray.db.engine import open_engine
from saeray.db.tables import ExtractionJob, LabelingJob, TrainingJob, utcnow
from saeray.lifecycle import JobStatus, report_progress, transition
from saeray.submit import BackendUnavailableError, DriverState
from tests.api_helpers import RecordingBackend, api_client, seed
from tests.lm_fixtures import tiny_model, tiny_tokenizer

AGO = timedelta(minutes=5)


@pytest.fixture
def seeded(database_url):
    return seed(database_url, examples=False)


@pytest.fixture
def backend():
    return RecordingBackend()


@pytest.fixture
def client(seeded, backend):
    with api_client(backend) as client:
        yield client


def add_job(database_url: str, job):
    with Session(open_engine(database_url), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
        return job


def running_extraction(seeded, **fields) -> ExtractionJob:
    values = {"status": "extracting", "progress": 0.4, "started_at": utcnow()}
    values["heartbeat_at"] = utcnow()
    return ExtractionJob(sae_id=seeded.sae_id, dataset_id=seeded.dataset_id, **values | fields)


def test_status_of_every_job_kind(client, seeded, database_url):
    job = add_job(database_url, running_extraction(seeded))
    body = client.get(f"/api/v1/jobs/{job.id}").json()
    assert (body["kind"], body["status"], body["progress"]) == ("extraction", "extracting", 0.4)
    assert body["terminal"] is False
    labeling = client.get(f"/api/v1/jobs/{seeded.labeling_job_id}").json()
    assert (labeling["kind"], labeling["terminal"]) == ("labeling", True)
    assert client.get("/api/v1/jobs/ext_unknown").status_code == 404
    assert client.get("/api/v1/jobs/xyz_unknown").status_code == 404


def test_a_healthy_job_is_not_asked_about(client, seeded, database_url, backend):
    job = add_job(database_url, running_extraction(seeded))
    backend.states[job.id] = DriverState("FAILED", "exit code 1")  # fresh heartbeat wins
    assert client.get(f"/api/v1/extractions/{job.id}").json()["status"] == "extracting"


@pytest.mark.parametrize(
    ("driver", "status", "message"),
    [
        (DriverState("FAILED", "exit code 1"), "failed", "exit code 1"),
        (DriverState("SUCCEEDED"), "failed", "without recording"),
        (DriverState("STOPPED"), "cancelled", "stopped"),
        (None, "failed", "no record"),
    ],
)
def test_a_dead_driver_ends_a_silent_row(
    client, seeded, database_url, backend, driver, status, message
):
    job = add_job(database_url, running_extraction(seeded, heartbeat_at=utcnow() - AGO))
    if driver is not None:
        backend.states[job.id] = driver
    body = client.get(f"/api/v1/extractions/{job.id}").json()
    assert body["status"] == status
    assert message in body["error"]
    assert body["finished_at"] is not None
    # It stays ended: the row itself was written.
    with Session(open_engine(database_url)) as session:
        assert session.get(ExtractionJob, job.id).status == status


def test_a_silent_row_whose_driver_runs_stays_running(client, seeded, database_url, backend):
    job = add_job(database_url, running_extraction(seeded, heartbeat_at=utcnow() - AGO))
    backend.states[job.id] = DriverState("RUNNING")
    assert client.get(f"/api/v1/jobs/{job.id}").json()["status"] == "extracting"


def test_a_queued_row_gets_a_grace_period_before_it_counts_as_lost(client, seeded, database_url):
    young = add_job(database_url, running_extraction(seeded, status="queued", progress=0.0))
    old = add_job(
        database_url,
        running_extraction(seeded, status="queued", progress=0.0, created_at=utcnow() - AGO),
    )
    assert client.get(f"/api/v1/jobs/{young.id}").json()["status"] == "queued"
    lost = client.get(f"/api/v1/jobs/{old.id}").json()
    assert lost["status"] == "failed" and "no record" in lost["error"]


def test_cancel_a_queued_job_at_once_and_a_running_one_through_ray(
    client, seeded, database_url, backend
):
    queued = add_job(database_url, running_extraction(seeded, status="queued", progress=0.0))
    response = client.post(f"/api/v1/extractions/{queued.id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    running = add_job(database_url, running_extraction(seeded))
    response = client.post(f"/api/v1/saes/{seeded.sae_id}/cancel-extraction")
    assert response.status_code == 202
    assert response.json()["id"] == running.id
    assert response.json()["status"] == "extracting"  # its process records the end
    assert backend.stopped == [queued.id, running.id]


def test_cancelling_an_ended_job_is_a_conflict(client, seeded):
    assert client.post(f"/api/v1/extractions/{seeded.extraction_id}/cancel").status_code == 409
    assert client.post(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}/cancel").status_code == 409
    response = client.post(f"/api/v1/saes/{seeded.sae_id}/cancel-extraction")
    assert response.status_code == 409
    assert client.post("/api/v1/extractions/ext_nope/cancel").status_code == 404


def test_extraction_status_of_an_sae_is_its_latest(client, seeded, database_url):
    response = client.get(f"/api/v1/saes/{seeded.sae_id}/extraction-status")
    assert response.json()["id"] == seeded.extraction_id
    job = add_job(database_url, running_extraction(seeded))
    assert client.get(f"/api/v1/saes/{seeded.sae_id}/extraction-status").json()["id"] == job.id


def test_a_second_extraction_of_an_sae_while_one_runs_is_a_conflict(client, seeded, database_url):
    running = add_job(database_url, running_extraction(seeded))
    response = client.post(
        f"/api/v1/saes/{seeded.sae_id}/extract-features", json={"dataset_id": seeded.dataset_id}
    )
    assert response.status_code == 409
    assert running.id in response.json()["detail"]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("gpt2")
    tiny_model("gpt2").save_pretrained(folder)
    tiny_tokenizer("gpt2").save_pretrained(folder)
    return str(folder)


def training_body(model: str, dataset_id: str) -> dict:
    return {
        "model_name": model,
        "hook_point": "blocks.1.hook_resid_post",
        "dataset_id": dataset_id,
        "config": {"d_sae": 16, "k": 4, "tokens": 2000},
    }


def test_start_and_cancel_training(client, seeded, backend, database_url, tiny_gpt2):
    response = client.post("/api/v1/training-jobs", json=training_body(tiny_gpt2, "ds_nope"))
    assert response.status_code == 404
    bad = training_body(tiny_gpt2, seeded.dataset_id)
    bad["config"]["k"] = 99
    assert "larger than d_sae" in client.post("/api/v1/training-jobs", json=bad).text
    response = client.post(
        "/api/v1/training-jobs", json=training_body(tiny_gpt2, seeded.dataset_id)
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["id"].startswith("trn_") and job["status"] == "queued"
    assert job["config"]["d_sae"] == 16
    entrypoint, env = backend.submitted[job["id"]]
    assert entrypoint == f"python -m jobs.train --job-id {job['id']}"
    assert env["SAERAY_DATABASE_URL"] == database_url
    assert set(env) == {"SAERAY_HOME", "SAERAY_DATABASE_URL", "SAERAY_ARTIFACTS"}
    assert client.get(f"/api/v1/training-jobs/{job['id']}").json()["status"] == "queued"
    assert job["id"] in [row["id"] for row in client.get("/api/v1/training-jobs").json()]
    cancelled = client.post(f"/api/v1/training-jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.post(f"/api/v1/training-jobs/{job['id']}/cancel").status_code == 409


def test_a_failed_submission_fails_the_row(client, seeded, backend, database_url, tiny_gpt2):
    def refuse(job_id, entrypoint, env_vars):
        raise BackendUnavailableError("no cluster here")

    backend.submit = refuse
    body = training_body(tiny_gpt2, seeded.dataset_id)
    response = client.post("/api/v1/training-jobs", json=body)
    assert response.status_code == 503
    assert "no cluster here" in response.json()["detail"]
    with Session(open_engine(database_url)) as session:
        (job,) = session.exec(select(TrainingJob)).all()
        assert job.status == "failed" and "no cluster here" in job.error


def events(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_events_of_an_ended_job_are_its_state_at_once(client, seeded):
    (event,) = events(client.get(f"/api/v1/jobs/{seeded.labeling_job_id}/events"))
    assert (event["status"], event["terminal"]) == ("completed", True)
    assert client.get("/api/v1/jobs/lab_nope/events").status_code == 404


@pytest.fixture
def live_url(client):
    """The same app on a real HTTP server (uvicorn, in a thread): the test client buffers a
    streamed body, so only a real server shows when each event arrives."""
    server = uvicorn.Server(
        uvicorn.Config(client.app, host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


def test_events_follow_a_job_at_most_two_seconds_apart_until_it_ends(
    live_url, seeded, database_url
):
    job = add_job(
        database_url,
        LabelingJob(extraction_id=seeded.extraction_id, provider="offline", model="m"),
    )

    def run_the_job():
        with Session(open_engine(database_url), expire_on_commit=False) as session:
            row = session.get(LabelingJob, job.id)
            time.sleep(1.0)
            transition(session, row, JobStatus.LOADING)
            transition(session, row, JobStatus.LABELING)
            for step in range(1, 4):
                time.sleep(1.0)
                report_progress(session, row, step / 4)
            time.sleep(3.0)  # a quiet stretch: the stream keeps talking
            transition(session, row, JobStatus.COMPLETED)

    worker = threading.Thread(target=run_the_job)
    worker.start()
    arrivals, received = [], []
    with httpx.stream("GET", f"{live_url}/api/v1/jobs/{job.id}/events", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
                received.append(json.loads(line.removeprefix("data: ")))
    worker.join()
    assert received[0]["status"] == "queued" and received[0]["progress"] == 0.0
    assert received[-1]["status"] == "completed" and received[-1]["terminal"]
    assert all(not event["terminal"] for event in received[:-1])
    assert {0.25, 0.5, 0.75} <= {event["progress"] for event in received}
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert max(gaps) <= 2.0, gaps
    assert len(received) >= 7  # the quiet stretch was not silent
