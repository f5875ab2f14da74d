"""saeray's own format: save_sae writes a SAELens 6.x folder plus saeray.json, and
loading it back gives identical encodings."""

import json

import pytest
import torch

from saeray.errors import ConflictError, InvalidInputError
from saeray.sae import HookInfo, load_sae, save_sae
from tests.sae_fixtures import (
    activations,
    dictionary_learning_state,
    randn,
    saelens_config,
    saelens_tensors,
    sparsify_tensors,
    write_dictionary_learning,
    write_saelens,
    write_sparsify,
)


@pytest.fixture(params=["standard", "jumprelu", "topk-rescaled", "gated", "sparsify", "dl-gated"])
def source_sae(request, tmp_path):
    kind = request.param
    if kind == "sparsify":
        return load_sae(write_sparsify(tmp_path / "run", "layers.2", sparsify_tensors()))
    if kind == "dl-gated":
        state = dictionary_learning_state("GatedAutoEncoder")
        return load_sae(write_dictionary_learning(tmp_path / "dl", "GatedAutoEncoder", state))
    architecture = kind.removesuffix("-rescaled")
    overrides = {"rescale_acts_by_decoder_norm": True} if kind.endswith("rescaled") else {}
    config = saelens_config(
        architecture, normalize_activations="constant_norm_rescale", **overrides
    )
    return load_sae(
        write_saelens(
            tmp_path / "src",
            saelens_tensors(architecture),
            config,
            sparsity=-randn(48, seed=1).abs(),
        )
    )


def test_saved_sae_loads_back_with_identical_encodings(source_sae, tmp_path):
    metrics = {"fvu": 0.12, "l0": 31.5, "tokens": 1_000_000}
    folder = save_sae(source_sae, tmp_path / "out" / "saved", metadata={"training": metrics})
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["cfg.json", "sae_weights.safetensors", "saeray.json"]
        + (["sparsity.safetensors"] if source_sae.log_sparsity is not None else [])
    )
    loaded = load_sae(folder)
    x = activations(n=25) * 2
    assert torch.equal(loaded.encode(x), source_sae.encode(x))
    assert torch.equal(loaded(x), source_sae(x))
    assert (loaded.format, loaded.architecture, loaded.k) == (
        "saeray",
        source_sae.architecture,
        source_sae.k,
    )
    assert (loaded.hook, loaded.model_name) == (source_sae.hook, source_sae.model_name)
    assert loaded.metadata["training"] == metrics
    if source_sae.log_sparsity is not None:
        assert torch.equal(loaded.log_sparsity, source_sae.log_sparsity)
    # The folder is a SAELens 6.x folder too, and reads the same that way.
    assert torch.equal(load_sae(folder, format="saelens").encode(x), source_sae.encode(x))
    config = json.loads((folder / "cfg.json").read_text())
    assert config["metadata"]["sae_lens_version"].startswith("6.")
    assert config["architecture"] == source_sae.architecture


def test_saeray_marker_carries_the_hook_layer(tmp_path):
    write_saelens(
        tmp_path / "src",
        saelens_tensors("standard"),
        saelens_config(
            "standard",
            metadata={"sae_lens_version": "6.1.0", "hook_name": "encoder.layer.2.output"},
        ),
    )
    sae = load_sae(tmp_path / "src")
    assert sae.hook == HookInfo("encoder.layer.2.output", 2)
    sae.hook = HookInfo("encoder.layer.2.output", 5)  # e.g. set by the training job
    assert load_sae(save_sae(sae, tmp_path / "out")).hook.layer == 5


def test_saving_over_an_existing_folder_is_refused_and_leaves_nothing_behind(tmp_path):
    sae = load_sae(
        write_saelens(tmp_path / "src", saelens_tensors("standard"), saelens_config("standard"))
    )
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ConflictError, match="already exists"):
        save_sae(sae, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(InvalidInputError, match="JSON-serialisable"):
        save_sae(sae, tmp_path / "bad", metadata={"when": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no staging left
    (tmp_path / "empty").mkdir()
    assert save_sae(sae, tmp_path / "empty").joinpath("saeray.json").is_file()


def test_saving_keeps_bfloat16(tmp_path):
    tensors = {k: v.to(torch.bfloat16) for k, v in saelens_tensors("topk").items()}
    sae = load_sae(write_saelens(tmp_path / "src", tensors, saelens_config("topk")))
    loaded = load_sae(save_sae(sae, tmp_path / "out"))
    assert loaded.dtype == torch.bfloat16
    assert torch.equal(loaded.encode(activations()), sae.encode(activations()))
