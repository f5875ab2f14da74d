"""SAELens folders (6.x and pre-6.0 configs) load and encode as SAELens encodes them.

Each reference below is SAELens's encode written out in numpy, independently of saeray.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from saeray.errors import InvalidInputError
from saeray.sae import load_sae
from tests.sae_fixtures import (
    D_IN,
    D_SAE,
    HOOK,
    activations,
    legacy_saelens_config,
    randn,
    saelens_config,
    saelens_tensors,
    tight_frame,
    write_json,
    write_saelens,
)


def npy(tensors):
    return {name: t.double().numpy() for name, t in tensors.items()}


def relu(a):
    return np.maximum(a, 0.0)


def topk_dense(pre, k):
    kth = -np.sort(-pre, axis=-1)[:, k - 1 : k]
    return relu(np.where(pre >= kth, pre, 0.0))


def assert_encodes(sae, x, expected, atol=1e-5):
    np.testing.assert_allclose(sae.encode(x).double().numpy(), expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "gated"])
def test_saelens_6_folders_encode_like_saelens(tmp_path, architecture):
    tensors = saelens_tensors(architecture)
    write_saelens(tmp_path, tensors, saelens_config(architecture))
    sae = load_sae(tmp_path)
    w, x = npy(tensors), activations()
    centred = x.double().numpy() - w["b_dec"]
    if architecture == "gated":
        gate = centred @ w["W_enc"] + w["b_gate"] > 0
        expected = gate * relu(centred @ (w["W_enc"] * np.exp(w["r_mag"])) + w["b_mag"])
    else:
        pre = centred @ w["W_enc"] + w["b_enc"]
        expected = relu(pre) if architecture == "standard" else relu(pre) * (pre > w["threshold"])
    assert_encodes(sae, x, expected)
    assert (sae.format, sae.architecture, sae.d_in, sae.d_sae) == (
        "saelens",
        architecture,
        D_IN,
        D_SAE,
    )
    assert (sae.hook.name, sae.hook.layer, sae.model_name) == (HOOK, 8, "gpt2")
    assert sae.metadata["context_size"] == 128
    torch.testing.assert_close(
        sae.decode(sae.encode(x)), torch.relu(sae.encode(x)) @ tensors["W_dec"] + tensors["b_dec"]
    )


@pytest.mark.parametrize("rescale", [False, True])
def test_topk_with_and_without_decoder_norm_rescaling(tmp_path, rescale):
    tensors = saelens_tensors("topk")
    write_saelens(
        tmp_path, tensors, saelens_config("topk", k=5, rescale_acts_by_decoder_norm=rescale)
    )
    sae = load_sae(tmp_path)
    w, x = npy(tensors), activations()
    pre = (x.double().numpy() - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    norms = np.linalg.norm(w["W_dec"], axis=-1)
    if rescale:
        pre = pre * norms  # SAELens: hidden_pre * W_dec.norm(dim=-1) before TopK
    expected = topk_dense(pre, 5)
    assert_encodes(sae, x, expected)
    assert sae.k == 5
    # SAELens decodes feature_acts / norms when rescaling; the reconstruction is the same.
    acts = expected / norms if rescale else expected
    np.testing.assert_allclose(
        sae.decode(sae.encode(x)).double().numpy(), acts @ w["W_dec"] + w["b_dec"], atol=1e-5
    )
    values, indices = sae.encode_topk(x)
    assert torch.equal(torch.zeros(x.shape[0], D_SAE).scatter_(-1, indices, values), sae.encode(x))


def test_batchtopk_training_checkpoint_loads_as_jumprelu(tmp_path):
    tensors = saelens_tensors("topk")
    tensors["topk_threshold"] = torch.tensor(0.25, dtype=torch.float64)
    config = saelens_config(
        "batchtopk", k=4.0, rescale_acts_by_decoder_norm=True, topk_threshold_lr=0.01
    )
    write_saelens(tmp_path, tensors, config)
    sae = load_sae(tmp_path)
    w, x = npy(tensors), activations()
    pre = ((x.double().numpy() - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * np.linalg.norm(
        w["W_dec"], axis=-1
    )
    assert sae.architecture == "jumprelu"
    assert_encodes(sae, x, relu(pre) * (pre > 0.25))


def test_pre_6_config_with_hook_layer_and_topk_activation_fn(tmp_path):
    tensors = saelens_tensors("standard")
    write_saelens(tmp_path / "relu", tensors, legacy_saelens_config())
    sae = load_sae(tmp_path / "relu")
    assert (sae.architecture, sae.hook.name, sae.hook.layer, sae.model_name) == (
        "standard",
        "blocks.3.hook_resid_pre",
        3,
        "gpt2-small",
    )
    w, x = npy(tensors), activations()
    assert_encodes(sae, x, relu((x.double().numpy() - w["b_dec"]) @ w["W_enc"] + w["b_enc"]))

    config = legacy_saelens_config(
        activation_fn_str="topk", activation_fn_kwargs={"k": 7}, hook_layer=None
    )
    config["hook_point"] = config.pop("hook_name")  # the oldest configs' name for it
    write_saelens(tmp_path / "topk", tensors, config)
    sae = load_sae(tmp_path / "topk")
    assert (sae.architecture, sae.k, sae.hook.name, sae.hook.layer) == (
        "topk",
        7,
        "blocks.3.hook_resid_pre",
        3,
    )
    assert_encodes(
        sae, x, topk_dense((x.double().numpy() - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 7)
    )


def test_pre_6_finetuning_scaling_factor_is_folded_into_the_decoder(tmp_path):
    tensors = saelens_tensors("standard")
    scale = randn(D_SAE, seed=5).abs() + 0.5
    tensors["scaling_factor"] = scale
    write_saelens(tmp_path, tensors, legacy_saelens_config(finetuning_scaling_factor=True))
    sae = load_sae(tmp_path)
    z = sae.encode(activations())
    torch.testing.assert_close(sae.decode(z), (z * scale) @ tensors["W_dec"] + tensors["b_dec"])


def test_expected_average_only_in_folds_the_recorded_scaling_factor(tmp_path):
    W_enc, W_dec = tight_frame()
    tensors = {
        "W_enc": W_enc,
        "W_dec": W_dec,
        "b_dec": randn(D_IN, seed=2),
        "b_enc": randn(2 * D_IN, seed=3) * 0.1,
    }
    config = saelens_config(
        "standard", d_sae=2 * D_IN, normalize_activations="expected_average_only_in"
    )
    write_saelens(tmp_path, tensors, config)
    write_json(tmp_path / "activation_scaler.json", {"scaling_factor": 0.25})
    sae = load_sae(tmp_path)
    w, x = npy(tensors), activations() * 4.0
    # SAELens trains on x * scaling_factor; the SAE sees the scaled input.
    scaled = x.double().numpy() * 0.25
    assert_encodes(sae, x, relu((scaled - w["b_dec"]) @ w["W_enc"] + w["b_enc"]))
    # and the reconstruction comes back in raw units
    unscaled = (
        relu((scaled - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    ) / 0.25
    np.testing.assert_allclose(sae(x).double().numpy(), unscaled, atol=1e-4)
    assert sae.normalize_activations == "none"

    by_argument = load_sae(tmp_path, norm_scaling_factor=0.25)  # the argument wins over the file
    torch.testing.assert_close(by_argument.encode(x), sae.encode(x))
    (tmp_path / "activation_scaler.json").unlink()
    with pytest.raises(InvalidInputError, match="norm_scaling_factor="):
        load_sae(tmp_path)
    save_file(
        {"estimated_norm_scaling_factor": torch.tensor(0.25)},
        tmp_path / "activations_store_state.safetensors",
    )
    torch.testing.assert_close(load_sae(tmp_path).encode(x), sae.encode(x))


def test_constant_norm_rescale_is_kept_for_encode_time(tmp_path):
    tensors = saelens_tensors("standard")
    write_saelens(
        tmp_path, tensors, saelens_config("standard", normalize_activations="constant_norm_rescale")
    )
    sae = load_sae(tmp_path)
    w, x = npy(tensors), activations() * 5
    xs = x.double().numpy()
    scaled = xs * np.sqrt(D_IN) / np.linalg.norm(xs, axis=-1, keepdims=True)
    assert_encodes(sae, x, relu((scaled - w["b_dec"]) @ w["W_enc"] + w["b_enc"]))


def test_apply_b_dec_to_input_false_skips_the_subtraction(tmp_path):
    tensors = saelens_tensors("standard")
    write_saelens(tmp_path, tensors, saelens_config("standard", apply_b_dec_to_input=False))
    w, x = npy(tensors), activations()
    assert_encodes(load_sae(tmp_path), x, relu(x.double().numpy() @ w["W_enc"] + w["b_enc"]))


def test_sparsity_file_is_exposed_as_log_sparsity(tmp_path):
    sparsity = -randn(D_SAE, seed=4).abs()
    write_saelens(
        tmp_path, saelens_tensors("standard"), saelens_config("standard"), sparsity=sparsity
    )
    sae = load_sae(tmp_path)
    torch.testing.assert_close(sae.log_sparsity, sparsity)
    assert load_sae(tmp_path, dtype="float64").log_sparsity.dtype == torch.float64


def test_dtype_follows_the_file_unless_asked(tmp_path):
    tensors = {name: t.to(torch.bfloat16) for name, t in saelens_tensors("standard").items()}
    write_saelens(tmp_path, tensors, saelens_config("standard", dtype="bfloat16"))
    assert load_sae(tmp_path).dtype == torch.bfloat16
    sae = load_sae(tmp_path, dtype=torch.float32)
    assert sae.dtype == torch.float32
    assert torch.equal(sae.W_enc, tensors["W_enc"].float())
    with pytest.raises(InvalidInputError, match="dtype"):
        load_sae(tmp_path, dtype="int8")


def test_a_weights_file_path_loads_its_folder(tmp_path):
    write_saelens(tmp_path, saelens_tensors("standard"), saelens_config("standard"))
    sae = load_sae(tmp_path / "sae_weights.safetensors")
    assert sae.format == "saelens" and sae.d_sae == D_SAE


def test_transcoder_architectures_are_refused(tmp_path):
    config = saelens_config("jumprelu_skip_transcoder", d_out=D_IN)
    write_saelens(tmp_path, saelens_tensors("jumprelu"), config)
    with pytest.raises(InvalidInputError, match="architecture 'jumprelu_skip_transcoder'"):
        load_sae(tmp_path)
