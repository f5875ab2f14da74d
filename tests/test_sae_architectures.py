"""The SAE module: each architecture's encode, sparse TopK, reconstruction, normalisation."""

import math

import pytest
import torch

from saeray.errors import InvalidInputError
from saeray.sae import GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from tests.sae_fixtures import D_IN, activations, randn, tight_frame

B_DEC = randn(D_IN, seed=3, scale=0.5)


def frame_sae(kind: str, **extra):
    W_enc, W_dec = tight_frame()
    d_sae = W_dec.shape[0]
    zeros = torch.zeros(d_sae)
    common = {"W_enc": W_enc, "W_dec": W_dec, "b_dec": B_DEC, "apply_b_dec_to_input": True}
    common.update(extra)
    if kind == "standard":
        return StandardSAE(b_enc=zeros, **common)
    if kind == "topk":
        return TopKSAE(b_enc=zeros, k=D_IN, **common)
    if kind == "gated":
        return GatedSAE(b_gate=zeros, b_mag=zeros, r_mag=zeros, **common)
    return JumpReLUSAE(b_enc=zeros, threshold=torch.full((d_sae,), 0.3), **common)


@pytest.mark.parametrize("kind", ["standard", "topk", "gated"])
def test_a_tight_frame_sae_reconstructs_its_input(kind):
    sae = frame_sae(kind)
    x = activations(n=20)
    z = sae.encode(x)
    assert z.shape == (20, 2 * D_IN)
    assert (z >= 0).all()
    assert int((z > 0).sum(-1).max()) <= D_IN  # one of each ±q_i pair fires
    torch.testing.assert_close(sae.decode(z), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=1e-5)


def test_jumprelu_reconstruction_error_is_bounded_by_its_threshold():
    sae = frame_sae("jumprelu")
    x = activations(n=200)
    error = (sae.decode(sae.encode(x)) - x).norm(dim=-1)
    # Each dropped coordinate is below the 0.3 threshold in an orthonormal basis.
    assert float(error.max()) <= 0.3 * math.sqrt(D_IN) + 1e-5
    assert float(error.max()) > 0  # the threshold really drops small coordinates


def test_each_architecture_encodes_with_its_published_formula():
    x = activations()
    W_enc, W_dec, b_enc = randn(D_IN, 32, seed=1), randn(32, D_IN, seed=2), randn(32, seed=3)
    threshold, b_mag, r_mag = randn(32, seed=4).abs(), randn(32, seed=5), randn(32, seed=6) * 0.3
    common = {"W_enc": W_enc, "W_dec": W_dec, "b_dec": B_DEC, "apply_b_dec_to_input": True}
    centred = x - B_DEC
    pre = centred @ W_enc + b_enc

    torch.testing.assert_close(
        StandardSAE(b_enc=b_enc, **common).encode(x), torch.clamp(pre, min=0)
    )
    jump = JumpReLUSAE(b_enc=b_enc, threshold=threshold, **common).encode(x)
    torch.testing.assert_close(jump, torch.where(pre > threshold, pre, 0.0).clamp(min=0))
    gated = GatedSAE(b_gate=b_enc, b_mag=b_mag, r_mag=r_mag, **common).encode(x)
    magnitude = centred @ (W_enc * r_mag.exp()) + b_mag
    torch.testing.assert_close(gated, torch.where(pre > 0, magnitude.clamp(min=0), 0.0))


def test_topk_keeps_the_k_largest_and_sparse_encode_equals_dense():
    x = activations(n=30)
    W_enc, b_enc = randn(D_IN, 40, seed=8), randn(40, seed=9)
    sae = TopKSAE(W_enc=W_enc, W_dec=randn(40, D_IN, seed=10), b_dec=B_DEC, b_enc=b_enc, k=5)
    dense = sae.encode(x)
    pre = x @ W_enc + b_enc
    kth = pre.sort(dim=-1, descending=True).values[:, 4:5]
    torch.testing.assert_close(dense, torch.where(pre >= kth, pre, 0.0).clamp(min=0))

    values, indices = sae.encode_topk(x)
    assert values.shape == indices.shape == (30, 5)
    rebuilt = torch.zeros_like(dense).scatter_(-1, indices, values)
    assert torch.equal(rebuilt, dense)


def test_topk_never_outputs_negative_activations_when_few_features_are_positive():
    b_enc = torch.full((40,), -50.0)
    b_enc[:2] = 50.0  # only two features can be positive; k is 5
    sae = TopKSAE(
        W_enc=randn(D_IN, 40, seed=8), W_dec=randn(40, D_IN, seed=10), b_dec=B_DEC, b_enc=b_enc, k=5
    )
    x = activations()
    dense = sae.encode(x)
    assert (dense >= 0).all() and int((dense > 0).sum(-1).max()) == 2
    values, _ = sae.encode_topk(x)
    assert (values >= 0).all() and int((values == 0).sum(-1).min()) == 3


def test_encode_topk_on_other_architectures_takes_the_largest_features():
    sae = frame_sae("jumprelu")
    x = activations()
    values, indices = sae.encode_topk(x, 3)
    torch.testing.assert_close(values, sae.encode(x).topk(3).values)
    assert torch.equal(sae.encode(x).gather(-1, indices), values)
    with pytest.raises(InvalidInputError, match="pass k"):
        sae.encode_topk(x)
    with pytest.raises(InvalidInputError, match="k=99"):
        sae.encode_topk(x, 99)


def test_encoding_keeps_leading_dimensions():
    sae = frame_sae("topk")
    x = randn(2, 5, D_IN, seed=11)
    z = sae.encode(x)
    assert z.shape == (2, 5, 2 * D_IN)
    torch.testing.assert_close(z[1, 3], sae.encode(x[1, 3]))
    values, _ = sae.encode_topk(x)
    assert values.shape == (2, 5, D_IN)


def test_constant_norm_rescale_encodes_the_rescaled_input_and_forward_undoes_it():
    sae = frame_sae("standard", normalize_activations="constant_norm_rescale")
    x = activations() * 7.0
    scaled = x * math.sqrt(D_IN) / x.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(sae.encode(x), frame_sae("standard").encode(scaled))
    torch.testing.assert_close(sae(x), x, atol=1e-4, rtol=1e-4)


def test_layer_norm_normalisation_is_undone_by_forward():
    sae = frame_sae("standard", normalize_activations="layer_norm")
    x = activations() * 3.0 + 2.0
    normed = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(sae.encode(x), frame_sae("standard").encode(normed))
    torch.testing.assert_close(sae(x), x, atol=1e-4, rtol=1e-4)


def test_to_changes_dtype_and_encoding_follows():
    sae = frame_sae("topk").to(torch.float64)
    assert sae.dtype == torch.float64 and sae.device.type == "cpu"
    z = sae.encode(activations())  # float32 input is cast to the SAE's dtype
    assert z.dtype == torch.float64
    assert sae.to(dtype=torch.bfloat16).encode(activations()).dtype == torch.bfloat16


def test_wrong_input_width_is_refused_with_the_expected_width():
    with pytest.raises(InvalidInputError, match=f"reads {D_IN}"):
        frame_sae("standard").encode(torch.zeros(3, D_IN + 1))


def test_inconsistent_weights_are_refused_at_construction():
    W_enc, W_dec = tight_frame()
    with pytest.raises(InvalidInputError, match=r"W_dec has shape \(16, 32\).*transposed"):
        StandardSAE(W_enc=W_enc, W_dec=W_dec.T, b_dec=B_DEC, b_enc=torch.zeros(32))
    with pytest.raises(InvalidInputError, match=r"b_enc has shape \(31,\)"):
        StandardSAE(W_enc=W_enc, W_dec=W_dec, b_dec=B_DEC, b_enc=torch.zeros(31))
    with pytest.raises(InvalidInputError, match="k=0"):
        TopKSAE(W_enc=W_enc, W_dec=W_dec, b_dec=B_DEC, b_enc=torch.zeros(32), k=0)
    with pytest.raises(InvalidInputError, match="normalize_activations"):
        StandardSAE(
            W_enc=W_enc,
            W_dec=W_dec,
            b_dec=B_DEC,
            b_enc=torch.zeros(32),
            normalize_activations="rms",
        )


def test_info_summarises_the_sae():
    info = frame_sae("topk").info
    assert (info.architecture, info.d_in, info.d_sae, info.k, info.dtype) == (
        "topk",
        D_IN,
        32,
        D_IN,
        "float32",
    )
    assert frame_sae("gated").info.k is None
