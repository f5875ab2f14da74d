"""End to end through real Ray Serve and real Ray jobs: register a tiny SAE and a text
file, extract, label offline, browse, stream the events, cancel a running job, and see a
job Ray never heard of end as failed. One local Ray (2 CPUs) for the module."""

from __future__ import annotations

import inspect
import json
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from saeray.db.engine import dispose_engines, open_engine
from saeray.db.migrate import upgrade
from saeray.db.tables import ExtractionJob, utcnow
from tests.lm_fixtures import WORDS, tiny_model, tiny_tokenizer
from tests.sae_fixtures import saelens_config, saelens_tensors, write_saelens

TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOOK = "blocks.1.hook_resid_post"
D_MODEL, D_SAE = 32, 64
# Cheap enough for 2 shared cores; the corpus is a few hundred tokens.
EXTRACTION = {
    "context_length": 16,
    "batch_size": 8,
    "top_k": 4,
    "n_quantiles": 2,
    "quantile_samples": 1,
    "top_tokens": 5,
    "tracked_tokens": 16,
    "logit_effects": 3,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_agent_port(env: pytest.MonkeyPatch) -> None:
    """Give this Ray's dashboard agent a free port. Its fixed default (52365) is taken when
    another local Ray runs on the machine, and then no job can be submitted. ray.init has
    no parameter for it, so the default of RayParams is changed for this module."""
    from ray._private.parameter import RayParams

    init = RayParams.__init__
    names = [
        name
        for name, parameter in inspect.signature(init).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    ]
    defaults = list(init.__defaults__)
    defaults[names.index("dashboard_agent_listen_port")] = free_port()
    env.setattr(init, "__defaults__", tuple(defaults))


def write_inputs(root: Path) -> tuple[Path, Path, Path]:
    """A tiny random GPT-2 with its tokenizer, an SAE on its layer 1 in SAELens layout,
    and a text file of a few dozen lines."""
    model_dir = root / "gpt2"
    tiny_model("gpt2").save_pretrained(model_dir)
    tiny_tokenizer("gpt2").save_pretrained(model_dir)
    config = saelens_config("standard", d_in=D_MODEL, d_sae=D_SAE)
    config["metadata"] |= {"model_name": str(model_dir), "hook_name": HOOK}
    sae_dir = write_saelens(root / "sae", saelens_tensors("standard", D_MODEL, D_SAE), config)
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(40)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    return model_dir, sae_dir, corpus


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The API on Serve over a SQLite database, auth on; yields (base URL, database URL)."""
    import ray
    from ray import serve

    from saeray.cli.serve import FAST_INGRESS_ENV, start

    root = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{root}/saeray.db"
    with pytest.MonkeyPatch.context() as env:
        # Set before Ray starts, so the replicas and the job drivers inherit them.
        env.setenv("SAERAY_HOME", str(root))
        env.setenv("SAERAY_ARTIFACTS", str(root / "artifacts"))
        env.setenv("SAERAY_DATABASE_URL", url)
        env.setenv("SAERAY_API_TOKEN", TOKEN)
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("PATH", str(Path(sys.executable).parent), prepend=":")
        for name, value in FAST_INGRESS_ENV.items():  # what `saeray serve` runs on
            env.setenv(name, value)
        env.setenv("RAY_SERVE_HAPROXY_METRICS_PORT", str(free_port()))  # fixed by default
        env.setenv("RAY_SERVE_HAPROXY_STATS_PORT", str(free_port()))
        upgrade(url)
        private_agent_port(env)
        ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
        try:
            base = start(None, "127.0.0.1", free_port(), replicas=1)  # light on 2 shared cores
            yield base + "/api/v1", url
        finally:
            serve.shutdown()
            ray.shutdown()
            dispose_engines()


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=120.0) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def stream_events(api: httpx.Client, job_id: str, timeout_s: float = 600) -> list[tuple]:
    """(arrival time, event) for every event of the job's stream, until it closes."""
    received = []
    deadline = time.monotonic() + timeout_s
    with api.stream("GET", f"/jobs/{job_id}/events", timeout=30.0) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append((time.monotonic(), json.loads(line[6:])))
            assert time.monotonic() < deadline, f"{job_id} still running: {received[-1]}"
    return received


def wait_until(api: httpx.Client, job_id: str, done, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = ok(api.get(f"/jobs/{job_id}"))
        if done(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"{job_id} never got there: {state}")


@pytest.fixture(scope="module")
def registered(api, tmp_path_factory):
    _, sae_dir, corpus = write_inputs(tmp_path_factory.mktemp("inputs"))
    sae = ok(api.post("/saes", json={"path": str(sae_dir), "name": "tiny"}), 201)
    dataset = ok(api.post("/datasets", json={"spec": str(corpus), "name": "corpus"}), 201)
    return sae, dataset


def test_auth_through_serve(server):
    assert httpx.get(f"{server[0]}/health").status_code == 200
    assert httpx.get(f"{server[0]}/saes").status_code == 401
    page = httpx.get(server[0].removesuffix("/api/v1") + "/")
    assert page.status_code == 200 and "feature browser" in page.text


def test_extract_label_and_browse(api, registered):
    sae, dataset = registered
    assert (sae["d_in"], sae["d_sae"], sae["source_type"]) == (D_MODEL, D_SAE, "external")
    body = {"dataset_id": dataset["id"], "config": EXTRACTION}
    extraction = ok(api.post(f"/saes/{sae['id']}/extract-features", json=body), 202)
    assert (extraction["status"], extraction["progress"]) == ("queued", 0.0)

    events = stream_events(api, extraction["id"])
    states = [event for _, event in events]
    assert states[0]["kind"] == "extraction"
    assert states[-1]["status"] == "completed", states[-1]["error"]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(events, events[1:], strict=False)]
    assert max(gaps) < 2.5, gaps  # at most 2 s apart, and some slack for a busy machine
    late = stream_events(api, extraction["id"])  # a late client gets the state, not nothing
    assert [event["status"] for _, event in late] == ["completed"]

    listed = {row["id"]: row for row in ok(api.get("/extractions"))}
    assert listed[extraction["id"]]["source_type"] == "external"
    assert listed[extraction["id"]]["labeling"]["status"] == "unlabeled"
    page = ok(api.get(f"/extractions/{extraction['id']}/features", params={"limit": 5}))
    assert page["total"] == D_SAE and len(page["items"]) == 5
    top = ok(api.get(f"/features/{page['items'][0]['id']}"))
    assert top["examples"], top
    assert max(top["examples"][0]["activations"]) > 0
    assert len(top["examples"][0]["activations"]) == len(top["examples"][0]["tokens"])

    estimate = ok(
        api.post(f"/extractions/{extraction['id']}/labeling-estimate", json={"provider": "offline"})
    )
    assert estimate["features"] > 0
    labeling = ok(
        api.post(f"/extractions/{extraction['id']}/label-features", json={"provider": "offline"}),
        202,
    )
    final = stream_events(api, labeling["id"])[-1][1]
    assert (final["kind"], final["status"]) == ("labeling", "completed"), final["error"]
    labeled = ok(api.get(f"/extractions/{extraction['id']}/features", params={"filter": "labeled"}))
    assert labeled["total"] == estimate["features"]
    assert all(item["label"] for item in labeled["items"])
    shown = ok(api.get(f"/extractions/{extraction['id']}"))["labeling"]
    assert shown["latest_job"]["id"] == labeling["id"]
    found = ok(
        api.get(
            f"/extractions/{extraction['id']}/features",
            params={"q": labeled["items"][0]["label"], "search_in": "label"},
        )
    )
    assert labeled["items"][0]["id"] in [item["id"] for item in found["items"]]


def test_cancel_a_running_extraction(api, registered):
    sae, dataset = registered
    body = {"dataset_id": dataset["id"], "config": EXTRACTION}
    extraction = ok(api.post(f"/saes/{sae['id']}/extract-features", json=body), 202)
    second = api.post(f"/saes/{sae['id']}/extract-features", json=body)
    assert second.status_code == 409  # one extraction of an SAE at a time
    wait_until(api, extraction["id"], lambda state: state["status"] != "queued")
    cancelled = api.post(f"/extractions/{extraction['id']}/cancel")
    if cancelled.status_code == 409:  # it finished first: nothing left to show here
        pytest.fail(f"the extraction ended before it could be cancelled: {cancelled.text}")
    assert cancelled.status_code == 202
    final = wait_until(api, extraction["id"], lambda state: state["terminal"], timeout_s=60)
    assert final["status"] == "cancelled", (final["status"], final["error"])
    assert api.post(f"/extractions/{extraction['id']}/cancel").status_code == 409


def test_a_job_ray_never_heard_of_ends_failed(api, server, registered):
    sae, dataset = registered
    with Session(open_engine(server[1]), expire_on_commit=False) as session:
        orphan = ExtractionJob(
            sae_id=sae["id"],
            dataset_id=dataset["id"],
            status="extracting",
            started_at=utcnow(),
            heartbeat_at=utcnow().replace(year=2000),
        )
        session.add(orphan)
        session.commit()
    state = ok(api.get(f"/jobs/{orphan.id}"))
    assert state["status"] == "failed" and "no record" in state["error"]


def test_the_api_loads_without_torch():
    """Replicas import the app: torch and transformers (~190 MB, ~1.6 s) load only when a
    request needs a model (a new job's hook check), never at start."""
    import subprocess

    code = (
        "import sys, deployments.app; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
