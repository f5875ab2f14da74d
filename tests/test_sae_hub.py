"""SAEs in Hugging Face repos, resolved offline from a hub cache laid out as
huggingface_hub lays it out (blobs, snapshot symlinks, refs)."""

import pytest
import torch

from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae import describe_sae, load_sae
from tests.sae_fixtures import (
    COMMIT,
    D_SAE,
    FakeHub,
    activations,
    gemma_scope_arrays,
    publish_to_hub_cache,
    saelens_config,
    saelens_tensors,
    sparsify_tensors,
    write_gemma_scope,
    write_saelens,
    write_sparsify,
)

REPO = "someorg/saes"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline hub cache holding REPO: a SAELens SAE, a Gemma Scope SAE, a sparsify run."""
    tree = tmp_path / "repo"
    write_saelens(
        tree / "blocks.8.hook_resid_post", saelens_tensors("standard"), saelens_config("standard")
    )
    write_gemma_scope(tree / "layer_3" / "width_16k" / "average_l0_50", gemma_scope_arrays())
    for hookpoint in ("layers.0", "layers.1"):
        write_sparsify(tree / "sparsify", hookpoint, sparsify_tensors())
    cache = tmp_path / "hub"
    publish_to_hub_cache(cache, REPO, tree)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hf_address_loads_from_the_cache_offline(hub_cache, tmp_path):
    sae = load_sae(f"hf://{REPO}/blocks.8.hook_resid_post")
    local = load_sae(tmp_path / "repo" / "blocks.8.hook_resid_post")
    assert (sae.format, sae.d_sae, sae.source) == (
        "saelens",
        D_SAE,
        f"hf://{REPO}/blocks.8.hook_resid_post",
    )
    assert torch.equal(sae.encode(activations()), local.encode(activations()))


def test_repo_id_with_path_in_repo_and_revision_keywords(hub_cache):
    sae = load_sae(REPO, path_in_repo="layer_3/width_16k/average_l0_50", revision=COMMIT)
    assert (sae.format, sae.hook.layer) == ("gemma_scope", 3)
    assert load_sae(f"hf://{REPO}@main/layer_3/width_16k/average_l0_50").format == "gemma_scope"
    info = describe_sae(
        f"hf://{REPO}/layer_3/width_16k/average_l0_50/params.npz"
    )  # a file names its folder
    assert (info.architecture, info.d_sae) == ("jumprelu", D_SAE)


def test_hub_folder_with_several_saes_asks_which(hub_cache):
    with pytest.raises(
        InvalidInputError,
        match=r"in folders layers\.0, layers\.1; .*e\.g\. hf://someorg/saes/sparsify/layers\.0",
    ):
        load_sae(f"hf://{REPO}/sparsify")
    assert load_sae(f"hf://{REPO}/sparsify/layers.1").hook.name == "layers.1"


def test_repo_not_in_the_cache_offline_is_a_clear_error(hub_cache):
    with pytest.raises(
        NotFoundError,
        match=r"hf://other/repo/x \(revision main\) is not in the Hugging Face cache .*OFFLINE",
    ):
        load_sae("hf://other/repo/x")
    with pytest.raises(NotFoundError, match="not in the Hugging Face cache"):
        load_sae(REPO, path_in_repo="blocks.8.hook_resid_post", revision="f" * 40)


def test_cached_repo_without_the_folder(hub_cache):
    with pytest.raises(NotFoundError, match=r"no SAE found at hf://someorg/saes/missing \(offline"):
        load_sae(f"hf://{REPO}/missing")


def test_malformed_addresses(hub_cache):
    with pytest.raises(InvalidInputError, match="hf://org/repo"):
        load_sae("hf://justone")
    with pytest.raises(InvalidInputError, match="names revision 'main' but revision='dev'"):
        load_sae(f"hf://{REPO}@main/x", revision="dev")


@pytest.fixture
def online_hub(tmp_path, monkeypatch):
    """A local server speaking the Hub's download and tree API for REPO; empty cache."""
    tree = tmp_path / "served"
    write_saelens(tree / "res" / "layer_8", saelens_tensors("standard"), saelens_config("standard"))
    for hookpoint in ("layers.0", "layers.1"):
        write_sparsify(tree / "sparsify", hookpoint, sparsify_tensors())
    hub = FakeHub(REPO, tree)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield hub
    hub.close()


def test_online_download_fills_the_cache_that_offline_loads_then_use(online_hub, monkeypatch):
    sae = load_sae(f"hf://{REPO}/res/layer_8")
    assert (sae.format, sae.hook.layer) == ("saelens", 8)
    assert (
        "GET /someorg/saes/resolve/main/res/layer_8/sae_weights.safetensors" in online_hub.requests
    )
    online_hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = load_sae(f"hf://{REPO}/res/layer_8")
    assert torch.equal(cached.encode(activations()), sae.encode(activations()))


def test_online_errors_and_listing(online_hub):
    with pytest.raises(InvalidInputError, match=r"in folders layers\.0, layers\.1"):
        load_sae(f"hf://{REPO}/sparsify")
    with pytest.raises(NotFoundError, match=r"no SAE found at hf://someorg/saes/nothing:"):
        load_sae(f"hf://{REPO}/nothing")
    with pytest.raises(NotFoundError, match="the repo or revision does not exist"):
        load_sae("hf://someorg/absent/x")
    with pytest.raises(NotFoundError, match="the repo or revision does not exist"):
        load_sae(f"hf://{REPO}@v9/res/layer_8")
