"""sparsify, dictionary_learning, Gemma Scope 1 and 2 and Llama Scope folders load and
encode with their publisher's formula (each written out here in numpy)."""

import numpy as np
import pytest
import torch

from saeray.errors import InvalidInputError
from saeray.sae import load_sae
from tests.sae_fixtures import (
    D_IN,
    D_SAE,
    activations,
    dictionary_learning_state,
    gemma_scope_arrays,
    llama_scope_tensors,
    sparsify_tensors,
    write_dictionary_learning,
    write_gemma_scope,
    write_gemma_scope_2,
    write_llama_scope,
    write_sparsify,
)


def npy(tensors):
    return {name: np.asarray(t, dtype=np.float64) for name, t in tensors.items()}


def relu(a):
    return np.maximum(a, 0.0)


def topk_dense(pre, k):
    kth = -np.sort(-pre, axis=-1)[:, k - 1 : k]
    return np.where(pre >= kth, pre, 0.0)


def assert_encodes(sae, x, expected, atol=1e-5):
    np.testing.assert_allclose(sae.encode(x).double().numpy(), expected, atol=atol, rtol=1e-4)


# --- EleutherAI sparsify ------------------------------------------------------------------


def test_sparsify_hookpoint_folder_encodes_like_sparsify(tmp_path):
    tensors = sparsify_tensors()
    folder = write_sparsify(tmp_path / "run", "layers.3", tensors, k=6)
    sae = load_sae(folder)
    w, x = npy(tensors), activations()
    # SparseCoder.encode: topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), k)
    pre = relu((x.double().numpy() - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    assert_encodes(sae, x, topk_dense(pre, 6))
    assert (sae.format, sae.architecture, sae.k, sae.d_in, sae.d_sae) == (
        "sparsify",
        "topk",
        6,
        D_IN,
        D_SAE,
    )
    assert (sae.hook.name, sae.hook.layer, sae.model_name) == (
        "layers.3",
        3,
        "EleutherAI/pythia-70m",
    )
    # SparseCoder.decode: top_acts @ W_dec[top_indices] + b_dec
    values, indices = sae.encode_topk(x)
    by_rows = (values[..., None] * tensors["W_dec"][indices]).sum(-2) + tensors["b_dec"]
    torch.testing.assert_close(sae.decode(sae.encode(x)), by_rows, atol=1e-5, rtol=1e-5)
    assert load_sae(folder / "sae.safetensors").hook.name == "layers.3"


def test_sparsify_run_folder_asks_which_hookpoint(tmp_path):
    run = tmp_path / "run"
    for hookpoint in ("layers.0", "layers.1", "layers.2.mlp"):
        write_sparsify(run, hookpoint, sparsify_tensors())
    with pytest.raises(
        InvalidInputError, match=r"layers\.0, layers\.1, layers\.2\.mlp.*e\.g\..*/layers\.0"
    ):
        load_sae(run)
    assert load_sae(run / "layers.2.mlp").hook.layer == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"transcode": True}, "transcoder"),
        ({"activation": "groupmax"}, "groupmax"),
        ({"skip_connection": True}, "skip"),
    ],
)
def test_sparsify_variants_that_are_not_plain_saes_are_refused(tmp_path, override, message):
    folder = write_sparsify(tmp_path, "layers.1", sparsify_tensors(), **override)
    with pytest.raises(InvalidInputError, match=message):
        load_sae(folder)


# --- dictionary_learning ------------------------------------------------------------------


def test_dictionary_learning_autoencoder_loads_with_normalised_decoder(tmp_path):
    state = dictionary_learning_state("AutoEncoder")
    sae = load_sae(write_dictionary_learning(tmp_path, "AutoEncoder", state))
    w, x = npy(state), activations()
    # AutoEncoder.encode = relu(encoder(x - bias)); from_pretrained (normalize_decoder=True)
    # scales feature i by the norm of decoder column i.
    norms = np.linalg.norm(w["decoder.weight"], axis=0)
    assert_encodes(
        sae,
        x,
        relu((x.double().numpy() - w["bias"]) @ w["encoder.weight"].T + w["encoder.bias"]) * norms,
    )
    assert (sae.format, sae.architecture, sae.hook.name, sae.hook.layer) == (
        "dictionary_learning",
        "standard",
        "resid_post_layer_3",
        3,
    )
    assert sae.model_name == "EleutherAI/pythia-70m-deduped"
    # decoding is AutoEncoder.decode of the unscaled features
    raw = sae.encode(x) / torch.from_numpy(norms).float()
    torch.testing.assert_close(
        sae.decode(sae.encode(x)),
        raw @ state["decoder.weight"].T + state["bias"],
        atol=1e-5,
        rtol=1e-5,
    )


def test_dictionary_learning_autoencoder_new_has_no_input_centring(tmp_path):
    state = dictionary_learning_state("AutoEncoderNew")
    sae = load_sae(write_dictionary_learning(tmp_path, "AutoEncoderNew", state))
    w, x = npy(state), activations()
    assert_encodes(sae, x, relu(x.double().numpy() @ w["encoder.weight"].T + w["encoder.bias"]))


def test_dictionary_learning_topk(tmp_path):
    state = dictionary_learning_state("AutoEncoderTopK", k=5)
    sae = load_sae(write_dictionary_learning(tmp_path, "AutoEncoderTopK", state, k=5))
    w, x = npy(state), activations()
    post_relu = relu((x.double().numpy() - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    assert_encodes(sae, x, topk_dense(post_relu, 5))
    assert (sae.architecture, sae.k) == ("topk", 5)


def test_dictionary_learning_batch_topk_applies_its_threshold(tmp_path):
    state = dictionary_learning_state("BatchTopKSAE")
    sae = load_sae(write_dictionary_learning(tmp_path, "BatchTopKSAE", state, k=6))
    w, x = npy(state), activations()
    post_relu = relu((x.double().numpy() - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    assert_encodes(sae, x, post_relu * (post_relu > 0.35))
    assert sae.architecture == "jumprelu" and sae.metadata["k"] == 6


def test_dictionary_learning_matryoshka_batch_topk(tmp_path):
    state = dictionary_learning_state("MatryoshkaBatchTopKSAE")
    sae = load_sae(write_dictionary_learning(tmp_path, "MatryoshkaBatchTopKSAE", state, k=6))
    w, x = npy(state), activations()
    post_relu = relu((x.double().numpy() - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    assert_encodes(sae, x, post_relu * (post_relu > 0.3))


def test_dictionary_learning_gated(tmp_path):
    state = dictionary_learning_state("GatedAutoEncoder")
    sae = load_sae(write_dictionary_learning(tmp_path, "GatedAutoEncoder", state))
    w, x = npy(state), activations()
    x_enc = (x.double().numpy() - w["decoder_bias"]) @ w["encoder.weight"].T
    expected = (x_enc + w["gate_bias"] > 0) * relu(np.exp(w["r_mag"]) * x_enc + w["mag_bias"])
    assert_encodes(sae, x, expected)
    torch.testing.assert_close(
        sae.decode(sae.encode(x)),
        sae.encode(x) @ state["decoder.weight"].T + state["decoder_bias"],
    )


def test_dictionary_learning_jumprelu(tmp_path):
    state = dictionary_learning_state("JumpReluAutoEncoder")
    sae = load_sae(write_dictionary_learning(tmp_path, "JumpReluAutoEncoder", state))
    w, x = npy(state), activations()
    pre = x.double().numpy() @ w["W_enc"] + w["b_enc"]  # apply_b_dec_to_input = False
    assert_encodes(sae, x, relu(pre * (pre > w["threshold"])))


# --- Gemma Scope ---------------------------------------------------------------------------


def test_gemma_scope_params_npz(tmp_path):
    arrays = gemma_scope_arrays()
    folder = write_gemma_scope(
        tmp_path / "gemma-scope-2b-pt-res" / "layer_12" / "width_16k" / "average_l0_71", arrays
    )
    sae = load_sae(folder)
    w, x = npy(arrays), activations()
    pre = x.double().numpy() @ w["W_enc"] + w["b_enc"]  # no b_dec subtraction
    assert_encodes(sae, x, relu(pre) * (pre > w["threshold"]))
    assert (sae.format, sae.architecture, sae.hook.layer) == ("gemma_scope", "jumprelu", 12)
    assert (sae.hook.name, sae.model_name) == ("blocks.12.hook_resid_post", "google/gemma-2-2b")
    np.testing.assert_allclose(
        sae.decode(sae.encode(x)).double().numpy(),
        (relu(pre) * (pre > w["threshold"])) @ w["W_dec"] + w["b_dec"],
        atol=1e-5,
    )


def test_gemma_scope_without_a_recognisable_path_still_loads(tmp_path):
    sae = load_sae(write_gemma_scope(tmp_path / "my_sae", gemma_scope_arrays()))
    assert (sae.hook.name, sae.hook.layer, sae.model_name) == (None, None, None)


def test_gemma_scope_2_lowercase_safetensors_and_config(tmp_path):
    arrays = gemma_scope_arrays(seed=31)
    config = {
        "hf_hook_point_in": "model.layers.10.output",
        "width": D_SAE,
        "model_name": "google/gemma-3-1b-pt",
        "architecture": "jump_relu",
        "l0": 20,
        "affine_connection": False,
        "type": "sae",
    }
    folder = write_gemma_scope_2(
        tmp_path / "resid_post" / "layer_10_width_16k_l0_small", arrays, config
    )
    sae = load_sae(folder)
    w, x = npy(arrays), activations()
    pre = x.double().numpy() @ w["W_enc"] + w["b_enc"]
    assert_encodes(sae, x, relu(pre) * (pre > w["threshold"]))
    assert (sae.format, sae.hook.name, sae.hook.layer) == (
        "gemma_scope_2",
        "model.layers.10.output",
        10,
    )
    assert sae.model_name == "google/gemma-3-1b-pt" and sae.metadata["l0"] == 20


def test_gemma_scope_2_without_config_infers_the_hook_from_the_folder(tmp_path):
    folder = write_gemma_scope_2(
        tmp_path / "attn_out_all" / "layer_4_width_16k_l0_big", gemma_scope_arrays(), None
    )
    sae = load_sae(folder)
    assert (sae.hook.name, sae.hook.layer) == ("model.layers.4.self_attn.o_proj.input", 4)


def test_gemma_scope_2_transcoders_are_refused(tmp_path):
    config = {
        "hf_hook_point_in": "model.layers.5.pre_feedforward_layernorm.output",
        "hf_hook_point_out": "model.layers.5.post_feedforward_layernorm.output",
        "width": D_SAE,
        "architecture": "jump_relu",
        "affine_connection": True,
    }
    folder = write_gemma_scope_2(
        tmp_path / "transcoder_all" / "layer_5_width_16k_l0_big_affine",
        gemma_scope_arrays(),
        config,
    )
    with pytest.raises(InvalidInputError, match="transcoder"):
        load_sae(folder)
    (folder / "config.json").unlink()  # the folder alone says so too
    with pytest.raises(InvalidInputError, match="transcoder folder"):
        load_sae(folder)


# --- Llama Scope ---------------------------------------------------------------------------


def test_llama_scope_jumprelu_with_dataset_wise_norm(tmp_path):
    tensors = llama_scope_tensors()
    folder = write_llama_scope(tmp_path / "Llama3_1-8B-Base-L5R-8x", tensors)
    sae = load_sae(folder)
    w, x = npy(tensors), activations() * 3
    # SAELens's Llama Scope convention: s = sqrt(d_model) / average norm; the SAE reads
    # s * x, its JumpReLU threshold is jump_relu_threshold * s, and it reconstructs x.
    s = np.sqrt(D_IN) / 9.0
    pre = (s * x.double().numpy()) @ w["encoder.weight"].T + w["encoder.bias"]
    acts = relu(pre) * (pre > 0.4 * s)
    assert_encodes(sae, x, acts)
    np.testing.assert_allclose(
        sae.decode(sae.encode(x)).double().numpy(),
        (acts @ w["decoder.weight"].T + w["decoder.bias"]) / s,
        atol=1e-5,
    )
    assert (sae.format, sae.architecture, sae.hook.name, sae.hook.layer) == (
        "llama_scope",
        "jumprelu",
        "blocks.5.hook_resid_post",
        5,
    )
    assert sae.model_name == "meta-llama/Llama-3.1-8B"
    assert load_sae(folder / "checkpoints" / "final.safetensors").format == "llama_scope"


def test_llama_scope_topk_without_normalisation(tmp_path):
    tensors = llama_scope_tensors()
    folder = write_llama_scope(tmp_path, tensors, act_fn="topk", top_k=7, norm_activation="none")
    sae = load_sae(folder)
    w, x = npy(tensors), activations()
    pre = x.double().numpy() @ w["encoder.weight"].T + w["encoder.bias"]
    assert_encodes(sae, x, relu(topk_dense(pre, 7)))
    assert sae.k == 7


def test_llama_scope_transcoders_are_refused(tmp_path):
    folder = write_llama_scope(
        tmp_path, llama_scope_tensors(), hook_point_out="blocks.5.hook_mlp_out"
    )
    with pytest.raises(InvalidInputError, match="transcoder"):
        load_sae(folder)
