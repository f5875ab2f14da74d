"""Which token positions count in feature statistics.

Padding never counts. Special tokens (BOS/EOS/PAD/CLS/SEP/MASK/UNK and the tokenizer's other
``all_special_ids``) don't count by default either: a BOS or [CLS] position carries huge,
feature-unrelated activations that would swamp maxima and means. ``include_special_tokens``
keeps them. The windows built by :mod:`saeray.corpus.windows` add only tokens from
``all_special_ids``, so this mask leaves exactly the text's own tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's special token ids, sorted."""
    return sorted(set(tokenizer.all_special_ids))


def token_mask(
    input_ids: Array,
    attention_mask: Array,
    special_ids: Iterable[int],
    *,
    include_special_tokens: bool = False,
) -> Array:
    """Bool mask ``[batch, seq]``: True where a token counts. NumPy in, NumPy out; torch
    in, torch out (on the same device)."""
    if isinstance(input_ids, torch.Tensor):
        mask = torch.as_tensor(attention_mask, device=input_ids.device) != 0
        if include_special_tokens:
            return mask
        special = torch.tensor(sorted(special_ids), dtype=input_ids.dtype, device=input_ids.device)
        return mask & ~torch.isin(input_ids, special)
    mask = np.asarray(attention_mask) != 0
    if include_special_tokens:
        return mask
    return mask & ~np.isin(input_ids, np.fromiter(special_ids, dtype=np.int64))
