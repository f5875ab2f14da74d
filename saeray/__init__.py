"""saeray: extract, label and score sparse-autoencoder features on Ray."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["SAE", "describe_sae", "load_sae", "save_sae", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `saeray db ...` and the API's light paths don't import torch.
    if name in {"SAE", "describe_sae", "load_sae", "save_sae"}:
        return getattr(importlib.import_module("saeray.sae"), name)
    raise AttributeError(f"module 'saeray' has no attribute {name!r}")
