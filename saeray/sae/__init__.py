"""Sparse autoencoders from every published format, behind one loader.

``load_sae(source)`` reads SAELens, Gemma Scope (1 and 2), EleutherAI sparsify,
dictionary_learning, Llama Scope and saeray folders, locally or from the Hugging Face
Hub, into one ``SAE`` module; ``save_sae`` writes saeray's own format.
"""

from saeray.sae.architectures import ARCHITECTURES, GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from saeray.sae.base import SAE, HookInfo, SAEInfo
from saeray.sae.formats.saeray_format import save_sae
from saeray.sae.loader import describe_sae, load_sae
from saeray.sae.registry import FORMATS

__all__ = [
    "ARCHITECTURES",
    "FORMATS",
    "SAE",
    "GatedSAE",
    "HookInfo",
    "JumpReLUSAE",
    "SAEInfo",
    "StandardSAE",
    "TopKSAE",
    "describe_sae",
    "load_sae",
    "save_sae",
]
