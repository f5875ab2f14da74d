"""Load a Hugging Face model and its tokenizer for reading activations.

A model comes from a local folder or a hub id; a hub id not in the local cache while offline
(``HF_HUB_OFFLINE=1``) is a clear :class:`NotFoundError`. Defaults: the GPU if there is one,
in bfloat16 (float16 where the GPU has no bf16), else the CPU in float32. Remote code runs
only with ``trust_remote_code=True``.

The model class: ``AutoModelForCausalLM`` when the config's ``architectures`` name a causal
LM (``...ForCausalLM``, ``...LMHeadModel``, or a ``...ForConditionalGeneration`` that
transformers maps to a causal LM, e.g. Gemma 3), so that :func:`unembedding` finds the LM
head; else ``AutoModel`` (the base model, e.g. the packaged MiniLM's ``BertModel``). Reading
activations never runs the head: the forward pass stops at the hook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from saeray import paths
from saeray.errors import InvalidInputError, NotFoundError

_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with gradients off, its tokenizer, and where it runs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype


def as_module(model: nn.Module | LoadedModel) -> nn.Module:
    if isinstance(model, LoadedModel):
        return model.model
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"expected a torch module or a LoadedModel, got {type(model).__name__}")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype asked for, or the default for the device (bf16 on GPU, fp32 on CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise InvalidInputError(
            f"unknown dtype {dtype!r}. Fix: use one of {', '.join(sorted(_DTYPES))}."
        ) from None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", os.sep)) or os.path.isabs(name) or name.count("/") > 1


def _local_folder(name_or_path: str | Path) -> Path | None:
    """The local model folder named, None for a hub id; an error for a bad local path."""
    path = Path(name_or_path).expanduser()
    if paths.is_dir(path):
        if not paths.is_file(path / "config.json"):
            raise NotFoundError(
                f"folder {path} has no config.json, so it is not a Hugging Face model folder. "
                "Fix: pass the folder that holds config.json and the weights."
            )
        return path
    if paths.exists(path) or _looks_like_path(str(name_or_path)):
        raise NotFoundError(
            f"no model folder at {path}. Fix: pass an existing folder with config.json, "
            "or a Hugging Face hub id such as EleutherAI/pythia-70m."
        )
    return None


def _hub_error(name: str, error: Exception) -> NotFoundError:
    from huggingface_hub import constants

    offline = "on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "off"
    return NotFoundError(
        f"model {name!r} is not a local folder and could not be loaded from the Hugging Face "
        f"hub or its cache (cache: {constants.HF_HUB_CACHE}; offline mode {offline}): "
        f"{str(error).strip().splitlines()[0]} Fix: pass a local model folder, or download "
        f"the model where there is network (`hf download {name}`) into that cache."
    )


def _load_config(
    source: str, name: str, revision: str | None, trust_remote_code: bool
) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code
        )
    except OSError as error:
        raise _hub_error(name, error) from error
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise InvalidInputError(
                f"model {name!r} needs its own code to load, and saeray runs remote code "
                "only when asked. Fix: pass trust_remote_code=True if you trust that code."
            ) from error
        raise InvalidInputError(f"cannot read the config of model {name!r}: {error}") from error


def wants_causal_lm(config: PretrainedConfig) -> bool:
    """Whether the config's architectures name a causal LM that AutoModelForCausalLM loads."""
    architectures = getattr(config, "architectures", None) or []
    named_causal = any(arch.endswith(_CAUSAL_SUFFIXES) for arch in architectures)
    return named_causal and type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


@dataclass(frozen=True)
class ModelInfo:
    """What a model's config says, read without loading weights."""

    name: str
    architecture: str
    model_type: str
    d_model: int
    n_layers: int


def describe_model(
    name_or_path: str | Path, *, revision: str | None = None, trust_remote_code: bool = False
) -> ModelInfo:
    """The architecture, residual width and depth of a model, from its config alone."""
    name = str(name_or_path)
    config = _load_config(_source(name_or_path), name, revision, trust_remote_code)
    text_config = config.get_text_config()
    d_model = getattr(text_config, "hidden_size", None)
    n_layers = getattr(text_config, "num_hidden_layers", None)
    if not isinstance(d_model, int) or not isinstance(n_layers, int):
        raise InvalidInputError(
            f"the config of model {name!r} gives no hidden_size or num_hidden_layers, so "
            "saeray cannot read it. Fix: use a decoder-only or encoder-only transformers model."
        )
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    return ModelInfo(name, architectures[0], config.model_type, d_model, n_layers)


def _source(name_or_path: str | Path) -> str:
    folder = _local_folder(name_or_path)
    return str(folder) if folder is not None else str(name_or_path)


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    causal_lm: bool | None = None,
) -> LoadedModel:
    """Load a model and tokenizer from a local folder or a (cached) hub id.

    ``revision``: a hub branch, tag or commit. ``causal_lm``: None picks the class from the
    config (see the module docstring); True or False forces ``AutoModelForCausalLM`` or
    ``AutoModel``.
    """
    name = str(name_or_path)
    source = _source(name_or_path)
    config = _load_config(source, name, revision, trust_remote_code)
    use_causal = wants_causal_lm(config) if causal_lm is None else causal_lm
    auto_class = AutoModelForCausalLM if use_causal else AutoModel
    target = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype, target)
    try:
        model = auto_class.from_pretrained(
            source,
            config=config,
            dtype=torch_dtype,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code
        )
    except OSError as error:
        raise _hub_error(name, error) from error
    model = model.to(target).eval().requires_grad_(False)
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, device=target, dtype=torch_dtype
    )


def unembedding(model_or_path: nn.Module | LoadedModel | str | Path) -> torch.Tensor | None:
    """The unembedding W_U as ``[d_model, vocab]`` (logits = residual @ W_U), or None.

    It is the LM head's weight, transposed (a view, not a copy), when the loaded model has
    an LM head acting on the residual width; None for base models (e.g. the packaged
    MiniLM, a ``BertModel``) and for heads behind a projection. Given a path or hub id, the
    model is loaded on the CPU first. The final norm before the head is not folded in.
    """
    if isinstance(model_or_path, str | Path):
        model_or_path = load_model(model_or_path, device="cpu")
    module = as_module(model_or_path)
    get_head = getattr(module, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return None
    config = getattr(module, "config", None)
    width = getattr(config.get_text_config(), "hidden_size", None) if config else None
    if width is not None and weight.shape[1] != width:
        return None
    return weight.detach().T
