"""Hook points on tiny random models: names, values, early stop, and bad input."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch
from torch import nn
from transformers import PretrainedConfig

from saeray.errors import InvalidInputError
from saeray.lm import (
    SITES,
    ActivationReader,
    find_layers,
    hook_names,
    hook_width,
    resolve_hook,
)
from tests.lm_fixtures import ARCHITECTURES, MORE_ARCHITECTURES, VOCAB, tiny_model

ALL_ARCHITECTURES = {**ARCHITECTURES, **MORE_ARCHITECTURES}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(arch) -> nn.Module:
    return tiny_model(arch)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB - 4, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # a padded row
    return input_ids, attention_mask


def _hidden_states(model, batch) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(input_ids=batch[0], attention_mask=batch[1], output_hidden_states=True)[
            "hidden_states"
        ]


def assert_same_activations(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding: an early-stopped forward may round a last bit unlike
    the full forward's hidden_states (GPT-Neo, on some CPUs: 7e-9 apart); the wrong layer
    or position would be orders of magnitude further off."""
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _module_output(model, path: str, batch) -> torch.Tensor:
    """What a forward hook on the module sees during a full forward pass."""
    seen = []
    handle = model.get_submodule(path).register_forward_hook(
        lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.no_grad():
            model(input_ids=batch[0], attention_mask=batch[1])
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_resid_pre_is_the_hidden_state_entering_the_block(model, batch, layer):
    hidden = _hidden_states(model, batch)
    got = ActivationReader(model, f"layers.{layer}.resid_pre").read_activations(*batch)
    assert_same_activations(got, hidden[layer])


@pytest.mark.parametrize("layer", [0, 1])
def test_resid_post_is_the_hidden_state_leaving_the_block(model, batch, layer):
    hidden = _hidden_states(model, batch)
    got = ActivationReader(model, f"layers.{layer}.resid_post").read_activations(*batch)
    assert_same_activations(got, hidden[layer + 1])


def test_resid_post_of_the_last_block_is_before_any_final_norm(model, arch, batch):
    path = f"{ARCHITECTURES[arch].layers_path}.2"
    got = ActivationReader(model, "layers.2.resid_post").read_activations(*batch)
    assert_same_activations(got, _module_output(model, path, batch))


@pytest.mark.parametrize("site", ["mlp_out", "attn_out"])
def test_sublayer_outputs_are_what_a_hook_on_the_submodule_sees(model, arch, batch, site):
    spec = ARCHITECTURES[arch]
    inner = spec.mlp_path if site == "mlp_out" else spec.attn_path
    path = f"{spec.layers_path}.1.{inner}"
    hook = resolve_hook(model, f"layers.1.{site}")
    assert hook.module_path == path
    got = ActivationReader(model, hook).read_activations(*batch)
    assert got.shape == (3, 9, 32)
    assert_same_activations(got, _module_output(model, path, batch))


@pytest.mark.parametrize("site", SITES)
def test_forward_pass_stops_at_the_hooked_module(model, arch, batch, site):
    layer = 1
    hook = resolve_hook(model, f"layers.{layer}.{site}")
    entered: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda *_args, name=name: entered.append(name))
        for name, module in model.named_modules()
        if name
    ]
    try:
        ActivationReader(model, hook).read_activations(*batch)
    finally:
        for handle in handles:
            handle.remove()
    layers_path = ARCHITECTURES[arch].layers_path
    blocks_entered = {
        int(name[len(layers_path) + 1 :].split(".")[0])
        for name in entered
        if name.startswith(f"{layers_path}.")
    }
    assert blocks_entered == {0, 1}
    # After the hooked module is entered, only the hooked module's own parts run.
    after = entered[entered.index(hook.module_path) + 1 :]
    assert all(name.startswith(f"{hook.module_path}.") for name in after), after
    if site == "resid_pre":
        assert after == []


def test_reader_accepts_numpy_and_a_missing_mask(model, batch):
    reader = ActivationReader(model, "layers.1.resid_post")
    full = reader.read_activations(batch[0], torch.ones_like(batch[0]))
    assert torch.equal(reader(batch[0].numpy()), full)
    assert not reader(batch[0]).requires_grad


def test_transformerlens_and_saeray_names_resolve_to_the_same_point(model):
    for site in SITES:
        lens = resolve_hook(model, f"blocks.2.hook_{site}")
        ours = resolve_hook(model, f"layers.2.{site}")
        assert lens == ours
        assert ours.canonical_name == f"layers.2.{site}"
        assert ours.layer == 2 and ours.site == site


def test_hook_names_list_every_site_of_every_layer(model):
    names = hook_names(model)
    assert len(names) == 12
    assert all(resolve_hook(model, name).canonical_name == name for name in names)


def test_hook_width_is_the_residual_width(model):
    for site in SITES:
        assert hook_width(model, f"layers.0.{site}") == 32


@pytest.mark.parametrize(
    ("arch", "name", "canonical"),
    [
        ("llama", "layers.1", "layers.1.resid_post"),
        ("llama", "model.layers.1", "layers.1.resid_post"),
        ("llama", "layers.1.mlp", "layers.1.mlp_out"),
        ("llama", "model.layers.1.self_attn", "layers.1.attn_out"),
        ("gpt2", "h.1", "layers.1.resid_post"),
        ("gpt2", "transformer.h.1.mlp", "layers.1.mlp_out"),
        ("gpt2", "layers.1", "layers.1.resid_post"),
        ("gpt2", "layers.1.mlp", "layers.1.mlp_out"),
        ("gpt_neox", "layers.0.attention", "layers.0.attn_out"),
        ("bert", "layers.1.mlp", "layers.1.mlp_out"),
        ("bert", "encoder.layer.1.output.dense", "layers.1.mlp_out"),
        ("bert", "encoder.layer.1.intermediate", "encoder.layer.1.intermediate"),
        ("gemma3", "language_model.layers.1", "layers.1.resid_post"),
        ("gemma3", "layers.1.mlp", "model.language_model.layers.1.mlp"),
        ("gemma3", "layers.1.mlp_out", "layers.1.mlp_out"),
    ],
)
def test_module_path_names(arch, name, canonical):
    model = tiny_model(arch)
    hook = resolve_hook(model, name)
    assert hook.canonical_name == canonical
    assert hook.layer == int(re.search(r"\.(\d+)", name)[1])


def test_a_submodule_that_is_no_site_is_read_as_it_is():
    model = tiny_model("bert")
    hook = resolve_hook(model, "encoder.layer.1.intermediate")
    assert (hook.site, hook.layer, hook.module_path) == ("module", 1, hook.canonical_name)
    assert hook_width(model, hook) == 64  # the MLP's hidden width


@pytest.mark.parametrize("arch", sorted(ALL_ARCHITECTURES))
def test_layer_lists_and_submodules_are_found(arch):
    model = tiny_model(arch)
    spec = ALL_ARCHITECTURES[arch]
    assert find_layers(model).path == spec.layers_path
    assert (
        resolve_hook(model, "layers.1.mlp_out").module_path
        == f"{spec.layers_path}.1.{spec.mlp_path}"
    )
    assert (
        resolve_hook(model, "layers.1.attn_out").module_path
        == f"{spec.layers_path}.1.{spec.attn_path}"
    )


@pytest.mark.parametrize("arch", sorted(MORE_ARCHITECTURES))
def test_more_architectures_read_hidden_states(arch):
    model = tiny_model(arch)
    input_ids = torch.arange(2, 14).reshape(2, 6)
    batch = (input_ids, torch.ones_like(input_ids))
    hidden = _hidden_states(model, batch)
    assert_same_activations(ActivationReader(model, "layers.1.resid_pre")(*batch), hidden[1])
    assert_same_activations(ActivationReader(model, "layers.0.resid_post")(*batch), hidden[1])
    path = resolve_hook(model, "layers.1.mlp_out").module_path
    assert_same_activations(
        ActivationReader(model, "layers.1.mlp_out")(*batch), _module_output(model, path, batch)
    )


# --- blocks that return tensors or tuples, and models saeray cannot read -----------------


class _Block(nn.Module):
    def __init__(self, returns_tuple: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.returns_tuple = returns_tuple

    def forward(self, hidden: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, None]:
        out = hidden + self.proj(hidden)
        return (out, None) if self.returns_tuple else out


class _ToyModel(nn.Module):
    def __init__(self, returns_tuple: bool, twin_stack: bool = False) -> None:
        super().__init__()
        self.config = PretrainedConfig(num_hidden_layers=2)
        self.embed = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList(_Block(returns_tuple) for _ in range(2))
        if twin_stack:  # like an encoder-decoder's two stacks
            self.twin = nn.ModuleList(_Block(returns_tuple) for _ in range(2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids)
        for block in self.blocks:
            out = block(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


@pytest.mark.parametrize("returns_tuple", [False, True])
def test_blocks_returning_tensors_or_tuples_both_work(returns_tuple):
    model = _ToyModel(returns_tuple).eval()
    input_ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        expected = model(input_ids, torch.ones_like(input_ids))
        first = model.blocks[0](model.embed(input_ids))
        first = first[0] if returns_tuple else first
    assert torch.equal(ActivationReader(model, "layers.1.resid_post")(input_ids), expected)
    assert torch.equal(ActivationReader(model, "layers.1.resid_pre")(input_ids), first)
    assert hook_width(model, "layers.0.resid_post") == 8


def test_layer_beyond_the_model_is_a_clear_error():
    model = tiny_model("llama")
    for name in ("layers.3.resid_post", "blocks.7.hook_mlp_out", "model.layers.5", "layers.9"):
        with pytest.raises(InvalidInputError, match=r"beyond LlamaForCausalLM.*3 layers \(0-2\)"):
            resolve_hook(model, name)


def test_unknown_hook_name_lists_the_valid_ones():
    model = tiny_model("gpt2")
    for name in ("blocks.1.attn.hook_z", "layers.1.resid_mid", "transformer.h.1.nothing", "x"):
        with pytest.raises(InvalidInputError) as error:
            resolve_hook(model, name)
        message = str(error.value)
        assert f"no hook {name!r}" in message
        assert "layers.<L>.resid_pre|resid_post|mlp_out|attn_out" in message
        assert "blocks.<L>.hook_resid_pre" in message
        assert "ln_1, attn, ln_2, mlp" in message
        assert "L = 0-2" in message


def test_model_without_a_recognisable_layer_list_says_what_was_found():
    model = tiny_model("llama")
    model.config.num_hidden_layers = 5
    try:
        with pytest.raises(InvalidInputError, match=r"no list of 5 .*model\.layers \(3\)"):
            resolve_hook(model, "layers.0.resid_post")
    finally:
        model.config.num_hidden_layers = 3
    with pytest.raises(
        InvalidInputError, match="several lists of 2 blocks in _ToyModel: blocks, twin"
    ):
        find_layers(_ToyModel(False, twin_stack=True))
    with pytest.raises(InvalidInputError, match="has no .config"):
        find_layers(nn.Linear(2, 2))


def test_block_without_mlp_names_its_submodules():
    with pytest.raises(InvalidInputError, match="no recognisable MLP submodule.*proj"):
        resolve_hook(_ToyModel(False), "layers.0.mlp_out")


def test_bad_input_shapes_are_clear_errors():
    reader = ActivationReader(tiny_model("gpt2"), "layers.0.resid_post")
    with pytest.raises(InvalidInputError, match=r"\[batch, seq\]"):
        reader(np.arange(5))
    with pytest.raises(InvalidInputError, match="same shape"):
        reader(np.ones((2, 4), dtype=np.int64), np.ones((2, 3), dtype=np.int64))


def test_threads_reading_through_one_model_at_once_each_get_their_own(model, batch):
    reader = ActivationReader(model, "layers.1.resid_post")
    inputs = [batch, (batch[0].flip(0), batch[1].flip(0))]
    expected = [reader(*one) for one in inputs]
    # Hold both forward passes at the first block until both are inside the model, so that
    # each one runs with both threads' hooks registered.
    both_inside = threading.Barrier(2, timeout=30)

    def wait_for_the_other(*_args: object) -> None:
        both_inside.wait()

    hold = find_layers(model).blocks[0].register_forward_pre_hook(wait_for_the_other)
    results: list[torch.Tensor | BaseException | None] = [None, None]

    def read(i: int) -> None:
        try:
            results[i] = reader(*inputs[i])
        except BaseException as exc:  # reported below, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        hold.remove()
    for got, want in zip(results, expected, strict=True):
        assert isinstance(got, torch.Tensor), got
        assert_same_activations(got, want)
