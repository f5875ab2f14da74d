"""Hook one point of a transformer and read its activations, stopping the forward pass there.

Hook names, all resolved by :func:`resolve_hook` to one :class:`HookPoint`:

- saeray's own: ``layers.<L>.resid_pre | resid_post | mlp_out | attn_out``;
- TransformerLens / SAELens: ``blocks.<L>.hook_resid_pre | hook_resid_post | hook_mlp_out |
  hook_attn_out``, so an SAE's own metadata selects the hook;
- module paths (EleutherAI sparsify): a block, e.g. ``layers.8`` or ``model.layers.8`` (its
  output: ``resid_post``), or a module inside one, e.g. ``layers.8.mlp`` (its output). Paths
  may leave out the model's outer prefixes (``layers.8`` for ``model.layers.8``, ``h.8`` for
  ``transformer.h.8``); ``layers.<L>`` and ``layers.<L>.mlp|attn|self_attn|...`` also work on
  models whose block list has another name.

``resid_pre`` of layer L is the input of block L (``hidden_states[L]`` of
``output_hidden_states``), ``resid_post`` its output (``hidden_states[L + 1]``, except after
the last block, where models with a final norm apply it to that entry and saeray does not).
``mlp_out`` / ``attn_out``: see :mod:`saeray.lm.architecture`.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from saeray.errors import InvalidInputError
from saeray.lm.architecture import LayerStack, attn_module_path, find_layers, mlp_module_path
from saeray.lm.loading import LoadedModel, as_module

Site = Literal["resid_pre", "resid_post", "mlp_out", "attn_out", "module"]
SITES: tuple[Site, ...] = ("resid_pre", "resid_post", "mlp_out", "attn_out")

_SAERAY_NAME = re.compile(r"^layers\.(\d+)\.(resid_pre|resid_post|mlp_out|attn_out)$")
_LENS_NAME = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|mlp_out|attn_out)$")
_GENERIC_MODULE_NAME = re.compile(r"^layers\.(\d+)(?:\.(\w+))?$")
_GENERIC_SUBMODULE_SITES: dict[str, Site] = {
    "mlp": "mlp_out",
    "feed_forward": "mlp_out",
    "ffn": "mlp_out",
    "attn": "attn_out",
    "self_attn": "attn_out",
    "attention": "attn_out",
    "self_attention": "attn_out",
}

ModelLike = nn.Module | LoadedModel


@dataclass(frozen=True)
class HookPoint:
    """One place in the model: its layer, site, the module read, and saeray's name for it.

    ``module_path`` is the full dotted path of the module whose output is read (for
    ``resid_pre``: whose input). ``canonical_name`` is ``layers.<L>.<site>``, or the module
    path for site ``module`` (a submodule that is none of the four sites).
    """

    layer: int
    site: Site
    module_path: str
    canonical_name: str

    @property
    def reads_input(self) -> bool:
        return self.site == "resid_pre"


def hook_names(model: ModelLike) -> list[str]:
    """saeray's names of the hook points the model has, layer by layer."""
    module = as_module(model)
    stack = find_layers(module)
    names = []
    for layer in range(len(stack)):
        for site in SITES:
            if _site_module_path(stack, layer, site) is not None:
                names.append(f"layers.{layer}.{site}")
    return names


def resolve_hook(model: ModelLike, name: str) -> HookPoint:
    """The hook point a name (saeray, TransformerLens/SAELens or module path) addresses."""
    module = as_module(model)
    stack = find_layers(module)
    match = _SAERAY_NAME.match(name) or _LENS_NAME.match(name)
    if match:
        return _site_hook(module, stack, int(match[1]), match[2], name)
    hook = _module_path_hook(module, stack, name)
    if hook is not None:
        return hook
    raise InvalidInputError(f"the model has no hook {name!r}. {_valid_names(module, stack)}")


def _check_layer(module: nn.Module, stack: LayerStack, layer: int, name: str) -> None:
    if layer >= len(stack):
        raise InvalidInputError(
            f"hook {name!r} asks for layer {layer}, beyond {type(module).__name__}, which has "
            f"{len(stack)} layers (0-{len(stack) - 1}). Fix: pick a layer in that range, or the "
            "SAE made for this model."
        )


def _site_module_path(stack: LayerStack, layer: int, site: str) -> str | None:
    block_path = stack.block_path(layer)
    if site in ("resid_pre", "resid_post"):
        return block_path
    block = stack.blocks[layer]
    inner = mlp_module_path(block) if site == "mlp_out" else attn_module_path(block)
    return None if inner is None else f"{block_path}.{inner}"


def _site_hook(module: nn.Module, stack: LayerStack, layer: int, site: str, name: str) -> HookPoint:
    _check_layer(module, stack, layer, name)
    path = _site_module_path(stack, layer, site)
    if path is None:
        block = stack.blocks[layer]
        children = ", ".join(child for child, _ in block.named_children())
        raise InvalidInputError(
            f"hook {name!r}: block {stack.block_path(layer)} ({type(block).__name__}) has no "
            f"recognisable {site.removesuffix('_out').upper()} submodule; its submodules are: "
            f"{children}. Fix: name the module to read by its path, e.g. "
            f"{stack.block_path(layer)}.<submodule>."
        )
    return HookPoint(layer, site, path, f"layers.{layer}.{site}")  # type: ignore[arg-type]


def _module_path_hook(module: nn.Module, stack: LayerStack, name: str) -> HookPoint | None:
    parts = stack.path.split(".")
    # The name may leave out any outer prefix of the block list's path.
    for start in range(len(parts)):
        relative = ".".join(parts[start:])
        if not name.startswith(f"{relative}."):
            continue
        layer_text, _, inner = name[len(relative) + 1 :].partition(".")
        if not layer_text.isdigit():
            continue
        layer = int(layer_text)
        _check_layer(module, stack, layer, name)
        path = stack.block_path(layer) + (f".{inner}" if inner else "")
        try:
            module.get_submodule(path)
        except AttributeError:
            return None
        for site in ("resid_post", "mlp_out", "attn_out"):
            if path == _site_module_path(stack, layer, site):
                return HookPoint(layer, site, path, f"layers.{layer}.{site}")  # type: ignore[arg-type]
        return HookPoint(layer, "module", path, path)
    generic = _GENERIC_MODULE_NAME.match(name)
    if generic is None:
        return None
    submodule = generic[2]
    site = "resid_post" if submodule is None else _GENERIC_SUBMODULE_SITES.get(submodule)
    return None if site is None else _site_hook(module, stack, int(generic[1]), site, name)


def _valid_names(module: nn.Module, stack: LayerStack) -> str:
    last = len(stack) - 1
    block = stack.blocks[0]
    children = ", ".join(child for child, _ in block.named_children())
    return (
        f"{type(module).__name__} has {len(stack)} layers (L = 0-{last}); valid hook names: "
        "layers.<L>.resid_pre|resid_post|mlp_out|attn_out (saeray), "
        "blocks.<L>.hook_resid_pre|hook_resid_post|hook_mlp_out|hook_attn_out "
        f"(TransformerLens/SAELens), module paths {stack.path}.<L> or layers.<L> (resid_post) "
        f"and {stack.path}.<L>.<submodule> (submodules of a block: {children}). "
        "Fix: use one of those, e.g. layers.0.resid_post."
    )


class _StopForward(Exception):
    """Raised by the hook once the activation is captured, to end the forward pass there."""


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"expected a tensor or a tuple starting with one, got {type(value).__name__}")


class ActivationReader:
    """Reads the activations at one hook point, running the model only up to that point.

    The hook raises a private exception once it has the activation, so no module after the
    hooked one runs (no block above it, no final norm, no LM head). The result is an
    inference tensor in the model's dtype and device; ``clone()`` it outside inference mode
    before using it in autograd (training).

    Several threads may read at once through one model (the extraction actor runs batches
    concurrently): each call's hook acts only on its own thread's forward pass.
    """

    def __init__(self, model: ModelLike, hook: str | HookPoint) -> None:
        self.model = as_module(model)
        self.hook = hook if isinstance(hook, HookPoint) else resolve_hook(self.model, hook)
        self._module = self.model.get_submodule(self.hook.module_path)
        # A KV cache is never read again here: don't build one.
        accepts_use_cache = "use_cache" in inspect.signature(self.model.forward).parameters
        self._extra_inputs = {"use_cache": False} if accepts_use_cache else {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def read_activations(
        self,
        input_ids: torch.Tensor | np.ndarray,
        attention_mask: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Activations ``[batch, seq, d]`` at the hook for token ids ``[batch, seq]``."""
        ids = torch.as_tensor(input_ids, device=self.device).long()
        if ids.ndim != 2:
            raise InvalidInputError(
                f"input_ids must be [batch, seq], got shape {tuple(ids.shape)}. "
                "Fix: add a batch dimension."
            )
        if attention_mask is None:
            mask = torch.ones_like(ids)
        else:
            mask = torch.as_tensor(attention_mask, device=self.device).long()
        if mask.shape != ids.shape:
            raise InvalidInputError(
                f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}. "
                "Fix: pass a mask of the same shape."
            )
        captured: list[torch.Tensor] = []
        reading_thread = threading.get_ident()

        def capture(value: Any) -> None:
            if threading.get_ident() != reading_thread:
                return  # another thread's forward pass, with its own hook
            captured.append(_first_tensor(value))
            raise _StopForward

        handle = self._register(capture)
        try:
            with torch.inference_mode():
                self.model(input_ids=ids, attention_mask=mask, **self._extra_inputs)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"the forward pass never reached {self.hook.module_path}")
        return captured[0]

    __call__ = read_activations

    def _register(self, capture: Callable[[Any], None]) -> torch.utils.hooks.RemovableHandle:
        if self.hook.reads_input:

            def read_input(_module: nn.Module, args: tuple, kwargs: dict) -> None:
                capture(args[0] if args else kwargs["hidden_states"])

            return self._module.register_forward_pre_hook(read_input, with_kwargs=True)
        return self._module.register_forward_hook(lambda _module, _args, output: capture(output))


def hook_width(model: ModelLike, hook: str | HookPoint) -> int:
    """The width d of the activations at a hook, probed with a two-token forward pass."""
    reader = ActivationReader(model, hook)
    return int(reader.read_activations(torch.zeros((1, 2), dtype=torch.long)).shape[-1])
