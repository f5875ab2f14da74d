"""Models, datasets and SAEs over HTTP: register, list, get, delete, and the refusals.
SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from saeray.artifacts import ArtifactStore
from saeray.examples import examples_dir
from tests.api_helpers import api_client, seed
from tests.lm_fixtures import tiny_model, tiny_tokenizer
from tests.sae_fixtures import saelens_config, saelens_tensors, write_saelens


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny GPT-2 folder, an SAE on it in SAELens layout, and a text file."""
    root = tmp_path_factory.mktemp("catalogue")
    tiny_model("gpt2").save_pretrained(root / "gpt2")
    tiny_tokenizer("gpt2").save_pretrained(root / "gpt2")
    config = saelens_config("standard", d_in=32, d_sae=64)
    config["metadata"] |= {
        "model_name": str(root / "gpt2"),
        "hook_name": "blocks.1.hook_resid_post",
    }
    write_saelens(root / "sae", saelens_tensors("standard", 32, 64), config)
    (root / "corpus.txt").write_text("the cat sat on the mat\n" * 5)
    return root


@pytest.fixture
def client(database_url):
    with api_client() as client:
        yield client


def test_models(client, files):
    response = client.post("/api/v1/models", json={"name": str(files / "gpt2")})
    assert response.status_code == 201, response.text
    model = response.json()
    assert (model["d_model"], model["n_layers"]) == (32, 3)
    again = client.post("/api/v1/models", json={"name": str(files / "gpt2")}).json()
    assert again["id"] == model["id"]  # registered once
    assert [row["id"] for row in client.get("/api/v1/models").json()] == [model["id"]]
    assert client.get(f"/api/v1/models/{model['id']}").json()["name"] == str(files / "gpt2")
    assert client.delete(f"/api/v1/models/{model['id']}").status_code == 204
    assert client.get(f"/api/v1/models/{model['id']}").status_code == 404
    assert client.delete(f"/api/v1/models/{model['id']}").status_code == 404
    missing = client.post("/api/v1/models", json={"name": str(files / "nothing-here")})
    assert 400 <= missing.status_code < 500


def test_datasets(client, files, database_url):
    response = client.post("/api/v1/datasets", json={"spec": str(files / "corpus.txt")})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["text_field"] == "text"
    assert client.get(f"/api/v1/datasets/{dataset['id']}").json() == dataset
    assert client.post("/api/v1/datasets", json={"spec": ""}).status_code == 422
    bad = client.post("/api/v1/datasets", json={"spec": str(files / "nothing.txt")})
    assert 400 <= bad.status_code < 500 and "nothing.txt" in bad.json()["detail"]
    assert client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204
    used = seed(database_url, examples=False)
    response = client.delete(f"/api/v1/datasets/{used.dataset_id}")
    assert response.status_code == 409 and used.extraction_id in response.json()["detail"]


def test_saes(client, files):
    response = client.post("/api/v1/saes", json={"path": str(files / "sae"), "name": "tiny"})
    assert response.status_code == 201, response.text
    sae = response.json()
    assert (sae["source"], sae["source_type"], sae["d_in"], sae["d_sae"]) == (
        "local",
        "external",
        32,
        64,
    )
    assert sae["hook_point"] == "blocks.1.hook_resid_post"
    assert [row["id"] for row in client.get("/api/v1/saes").json()] == [sae["id"]]
    missing = client.post("/api/v1/saes", json={"path": str(files / "no-sae-here")})
    assert missing.status_code == 404 and "no-sae-here" in missing.json()["detail"]
    assert client.post("/api/v1/saes", json={"path": str(files / "sae"), "x": 1}).status_code == 422
    assert client.delete(f"/api/v1/saes/{sae['id']}").status_code == 204
    assert client.get(f"/api/v1/saes/{sae['id']}").status_code == 404


def test_deleting_an_extracted_sae_needs_cascade(client, database_url):
    seeded = seed(database_url)
    store = ArtifactStore()
    assert store.exists(examples_dir(seeded.extraction_id))
    refused = client.delete(f"/api/v1/saes/{seeded.sae_id}")
    assert refused.status_code == 409 and "cascade" in refused.json()["detail"]
    assert (
        client.delete(f"/api/v1/saes/{seeded.sae_id}", params={"cascade": True}).status_code == 204
    )
    assert client.get(f"/api/v1/extractions/{seeded.extraction_id}").status_code == 404
    assert client.get(f"/api/v1/features/{seeded.feature_ids[0]}").status_code == 404
    assert not store.exists(examples_dir(seeded.extraction_id))


def test_delete_an_extraction(client, database_url):
    seeded = seed(database_url)
    assert client.delete(f"/api/v1/extractions/{seeded.extraction_id}").status_code == 204
    assert client.get(f"/api/v1/extractions/{seeded.extraction_id}").status_code == 404
    assert client.get(f"/api/v1/labeling-jobs/{seeded.labeling_job_id}").status_code == 404
    assert not ArtifactStore().exists(examples_dir(seeded.extraction_id))


@pytest.mark.parametrize(
    ("url", "field"),
    [("/api/v1/models", "name"), ("/api/v1/saes", "path"), ("/api/v1/datasets", "spec")],
)
@pytest.mark.parametrize("text", ["x" * 256, "é" * 200, "a\x00b", "/".join(["abc"] * 1500)])
def test_paths_no_filesystem_could_hold_are_422(client, url, field, text):
    response = client.post(url, json={field: text})
    assert response.status_code == 422, response.text
