"""The trainable TopK SAE and its trainer, on synthetic activations (no Ray, no database)."""

from __future__ import annotations

import pytest
import torch

from saeray.training.topk import TopKSAE, geometric_median, to_inference_sae
from saeray.training.trainer import TopKTrainer, TrainerConfig

D_IN = 32


def sparse_activations(
    tokens: int, *, atoms: int = 96, active: int = 3, seed: int = 0, scale: float = 7.0
) -> torch.Tensor:
    """Tokens made of a few of ``atoms`` fixed directions with positive weights, plus an
    offset and noise, at a raw scale far from 1 (as real residual streams are)."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, D_IN, generator=generator), dim=1)
    offset = torch.randn(D_IN, generator=generator)
    picks = torch.rand(tokens, atoms, generator=generator).argsort(dim=1)[:, :active]
    weights = torch.rand(tokens, active, generator=generator) + 0.5
    x = (weights[..., None] * dictionary[picks]).sum(dim=1) + offset
    return scale * (x + 0.01 * torch.randn(tokens, D_IN, generator=generator))


def batches(data: torch.Tensor, batch_size: int, steps: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield data[torch.randint(0, len(data), (batch_size,), generator=generator)]


def test_training_lowers_the_loss_and_raises_explained_variance():
    data = sparse_activations(8192)
    heldout = sparse_activations(2048, seed=0)[-1024:]
    trainer = TopKTrainer(D_IN, TrainerConfig(d_sae=128, k=4, lr=3e-3), total_steps=300)
    trainer.initialise(data[:2048])
    before = trainer.evaluate(heldout)
    losses = [trainer.step(batch).loss for batch in batches(data, 256, 300)]
    after = trainer.evaluate(heldout)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    assert after.explained_variance > 0.8 > before.explained_variance
    assert after.l0 <= 4


def test_input_normalisation_gives_unit_mean_squared_norm_and_b_dec_at_the_median():
    data = sparse_activations(4096)
    sae = TopKSAE(D_IN, 64, 4)
    sae.initialise_from(data)
    normalised = sae.normalise(data)
    assert normalised.pow(2).sum(dim=1).mean().item() == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(sae.b_dec, geometric_median(normalised), atol=1e-5)
    sae.initialise_from(data, b_dec_init="mean")
    assert torch.allclose(sae.b_dec, normalised.mean(dim=0), atol=1e-6)


def test_geometric_median_ignores_outliers_that_pull_the_mean():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(999, 8, generator=generator) * 0.1
    points = torch.cat([points, torch.full((1, 8), 1000.0)])
    assert points.mean(dim=0).norm() > 2
    assert geometric_median(points).norm() < 0.1


def test_decoder_rows_stay_unit_norm_and_their_gradient_loses_its_radial_part():
    data = sparse_activations(4096)
    trainer = TopKTrainer(D_IN, TrainerConfig(d_sae=64, k=4, lr=1e-2), total_steps=50)
    for batch in batches(data, 256, 50):
        trainer.step(batch)
        norms = trainer.sae.W_dec.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)

    sae = trainer.sae
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.project_decoder_gradient()
    radial = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    assert radial.abs().max() < 1e-5


def train_with_dead_latents(auxk_alpha: float) -> tuple[TopKTrainer, torch.Tensor]:
    """Start with a third of the latents shrunk so that they never reach the top k."""
    data = sparse_activations(8192, seed=1)
    config = TrainerConfig(
        d_sae=96, k=4, lr=3e-3, auxk_alpha=auxk_alpha, dead_after_tokens=512, seed=3
    )
    trainer = TopKTrainer(D_IN, config, total_steps=400)
    trainer.initialise(data[:2048])
    dead = torch.arange(96) % 3 == 0
    with torch.no_grad():
        trainer.sae.W_enc[dead] *= 0.01
    for batch in batches(data, 256, 400, seed=1):
        trainer.step(batch)
    code = trainer.sae.encode(trainer.sae.normalise(data))
    fired = torch.zeros(96, dtype=torch.bool)
    fired[code.indices[code.values > 0]] = True
    return trainer, fired[dead]


def test_auxk_loss_revives_latents_that_start_dead():
    trainer, revived = train_with_dead_latents(auxk_alpha=1 / 32)
    assert revived.float().mean() > 0.5, f"only {int(revived.sum())} of 32 dead latents fire"
    assert trainer.dead_mask().float().mean() < 0.2

    _, untouched = train_with_dead_latents(auxk_alpha=0.0)
    assert not untouched.any(), "without the auxiliary loss dead latents get no gradient"


def test_auxk_loss_is_zero_without_dead_latents_and_positive_with_them():
    sae = TopKSAE(D_IN, 64, 4)
    x = sae.normalise(sparse_activations(256))
    nobody = torch.zeros(64, dtype=torch.bool)
    assert sae(x, dead_mask=nobody).auxk_loss.item() == 0.0
    half = torch.arange(64) < 32
    assert sae(x, dead_mask=half).auxk_loss.item() > 0.0


def test_saved_sae_takes_raw_activations_and_encodes_as_the_trainer(tmp_path):
    from saeray.sae import load_sae, save_sae

    data = sparse_activations(4096)
    trainer = TopKTrainer(D_IN, TrainerConfig(d_sae=64, k=4, lr=3e-3), total_steps=100)
    for batch in batches(data, 256, 100):
        trainer.step(batch)
    assert trainer.sae.input_scale.item() != pytest.approx(1.0, abs=0.1)
    exported = to_inference_sae(trainer.sae, hook="blocks.0.hook_resid_post", model_name="m")
    folder = save_sae(exported, tmp_path / "sae", metadata={"explained_variance": 0.9})
    loaded = load_sae(folder)

    raw = sparse_activations(512, seed=5)
    expected = trainer.sae.encode_raw(raw)
    torch.testing.assert_close(loaded.encode(raw), expected, rtol=1e-5, atol=1e-5)
    assert (expected > 0).sum(dim=1).max() <= 4
    # The reconstruction is in raw units too.
    x = trainer.sae.normalise(raw)
    reconstruction = trainer.sae.decode(trainer.sae.encode(x)) / trainer.sae.input_scale
    torch.testing.assert_close(loaded(raw), reconstruction, rtol=1e-4, atol=1e-4)
    assert loaded.k == 4 and loaded.hook.name == "blocks.0.hook_resid_post"
    assert loaded.hook.layer == 0 and loaded.metadata["explained_variance"] == 0.9


def test_learning_rate_warms_up_then_decays_to_zero():
    config = TrainerConfig(d_sae=16, k=2, lr=1e-3, warmup_steps=10, decay_fraction=0.2)
    trainer = TopKTrainer(D_IN, config, total_steps=100)
    rates = [trainer.step(batch).lr for batch in batches(sparse_activations(1024), 64, 100)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3) and rates[79] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-3 / 20)
    assert all(later <= earlier for earlier, later in zip(rates[80:], rates[81:], strict=False))
