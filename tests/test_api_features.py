"""Browsing over HTTP: extractions with their labeling state, pages of features (sort,
search, filter), one feature in full, and a manual label. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.api_helpers import api_client, seed


@pytest.fixture
def seeded(database_url):
    return seed(database_url)


@pytest.fixture
def client(seeded):
    with api_client() as client:
        yield client


def indices(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["index"] for item in response.json()["items"]]


def test_extractions_list_their_source_type_and_labeling_state(client, seeded, database_url):
    trained = seed(database_url, sae_source="trained", examples=False)
    response = client.get("/api/v1/extractions")
    assert response.status_code == 200
    by_id = {row["id"]: row for row in response.json()}
    assert by_id[seeded.extraction_id]["source_type"] == "external"
    assert by_id[trained.extraction_id]["source_type"] == "trained"
    labeling = by_id[seeded.extraction_id]["labeling"]
    assert labeling["status"] == "partially_labeled"
    assert (labeling["features_total"], labeling["features_labeled"]) == (5, 3)
    assert labeling["latest_job"]["id"] == seeded.labeling_job_id
    only = client.get("/api/v1/extractions", params={"sae_id": trained.sae_id}).json()
    assert [row["id"] for row in only] == [trained.extraction_id]
    assert client.get("/api/v1/extractions", params={"status": "failed"}).json() == []


def test_features_sort_by_each_key_both_ways(client, seeded):
    url = f"/api/v1/extractions/{seeded.extraction_id}/features"
    assert indices(client.get(url)) == [0, 4, 3, 1, 2]  # frequency, highest first
    assert indices(client.get(url, params={"sort": "max_activation"})) == [1, 3, 0, 4, 2]
    assert indices(client.get(url, params={"sort": "index", "order": "asc"})) == [0, 1, 2, 3, 4]
    # Label order, unlabeled last either way.
    assert indices(client.get(url, params={"sort": "label", "order": "asc"})) == [1, 0, 3, 2, 4]
    assert indices(client.get(url, params={"sort": "label"})) == [3, 0, 1, 2, 4]


def test_features_page_through_with_a_total(client, seeded):
    url = f"/api/v1/extractions/{seeded.extraction_id}/features"
    first = client.get(url, params={"limit": 2, "sort": "index", "order": "asc"}).json()
    second = client.get(url, params={"limit": 2, "offset": 2, "sort": "index", "order": "asc"})
    assert first["total"] == 5 and [i["index"] for i in first["items"]] == [0, 1]
    assert indices(second) == [2, 3]
    assert client.get(url, params={"limit": 0}).status_code == 422
    assert client.get(url, params={"limit": 501}).status_code == 422


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "ANIMAL"}, [1]),
        ({"q": "code", "search_in": "category"}, [3]),
        ({"q": "code", "search_in": "label"}, []),
        ({"q": " cat", "search_in": "token"}, [1]),
        ({"q": "CLA", "search_in": "token"}, [3]),  # a token's start, any case
        ({"q": "count", "search_in": "token"}, []),  # not the JSON's keys
        ({"q": "at", "search_in": "token"}, []),  # nor the middle of a token
        ({"q": "100%", "search_in": "token"}, [4]),  # % is matched literally
        ({"q": "_"}, []),  # and so is _
        ({"filter": "labeled"}, [0, 1, 3]),
        ({"filter": "unlabeled"}, [2, 4]),
        ({"filter": "flagged"}, [1]),
        ({"filter": "dead"}, [2]),
        ({"filter": "labeled", "q": "python"}, [3]),
    ],
)
def test_features_search_and_filter(client, seeded, params, expected):
    url = f"/api/v1/extractions/{seeded.extraction_id}/features"
    response = client.get(url, params={"sort": "index", "order": "asc", **params})
    assert indices(response) == expected
    assert response.json()["total"] == len(expected)


def test_feature_items_carry_the_active_label(client, seeded):
    url = f"/api/v1/extractions/{seeded.extraction_id}/features"
    items = {i["index"]: i for i in client.get(url).json()["items"]}
    assert items[0]["label"] == "articles" and items[0]["category"] == "grammar"
    assert items[1]["flagged"] is True and items[0]["flagged"] is False
    assert items[4]["label"] is None


def test_sae_features_are_those_of_its_latest_completed_extraction(client, seeded):
    response = client.get(f"/api/v1/saes/{seeded.sae_id}/features", params={"filter": "dead"})
    assert response.json()["extraction_id"] == seeded.extraction_id
    assert indices(response) == [2]


def test_a_feature_in_full(client, seeded):
    response = client.get(f"/api/v1/features/{seeded.feature_ids[1]}")
    assert response.status_code == 200, response.text
    feature = response.json()
    assert feature["index"] == 1 and feature["max_activation"] == 9.5
    assert [row["token"] for row in feature["top_tokens"]["by_count"]] == [" cat", " dog"]
    assert feature["histogram"] == {"edges": [0.001, 1.0, None], "counts": [3, 1]}
    assert feature["logit_effects"]["positive"][0]["token"] == " meow"
    top = feature["examples"][0]
    assert top["tokens"] == ["The", " cat", " sat"]
    assert top["activations"] == [0.0, 9.5, 0.25]
    assert [label["label"] for label in feature["labels"]] == ["animals"]
    assert feature["labels"][0]["active"] is True


def test_label_history_is_newest_first_with_the_active_one_marked(client, seeded):
    feature = client.get(f"/api/v1/features/{seeded.feature_ids[0]}").json()
    assert [(label["label"], label["active"]) for label in feature["labels"]] == [
        ("articles", True),
        ("old article label", False),
    ]
    assert feature["examples"] == []  # none written for feature 0


def test_unknown_ids_are_404(client):
    assert client.get("/api/v1/features/999999").status_code == 404
    assert client.get("/api/v1/extractions/ext_nope").status_code == 404
    assert client.get("/api/v1/extractions/ext_nope/features").status_code == 404
    assert client.get("/api/v1/saes/sae_nope/features").status_code == 404
    assert client.get("/api/v1/features/not-a-number").status_code == 422
