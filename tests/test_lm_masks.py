"""The token mask: padding never counts, special tokens only when asked."""

from __future__ import annotations

import numpy as np
import torch

from saeray.lm import special_token_ids, token_mask
from tests.lm_fixtures import tiny_tokenizer

INPUT_IDS = np.array([[1, 7, 8, 2, 0], [1, 9, 2, 0, 0]])
ATTENTION = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])


def test_special_tokens_and_padding_are_left_out_by_default():
    mask = token_mask(INPUT_IDS, ATTENTION, [0, 1, 2])
    assert mask.dtype == np.bool_
    assert mask.tolist() == [[False, True, True, False, False], [False, True, False, False, False]]


def test_special_tokens_can_be_included_but_padding_never():
    mask = token_mask(INPUT_IDS, ATTENTION, [0, 1, 2], include_special_tokens=True)
    assert mask.tolist() == (ATTENTION == 1).tolist()


def test_torch_in_torch_out():
    ids, attention = torch.from_numpy(INPUT_IDS), torch.from_numpy(ATTENTION)
    mask = token_mask(ids, attention, [0, 1, 2])
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    assert mask.tolist() == token_mask(INPUT_IDS, ATTENTION, [0, 1, 2]).tolist()


def test_special_ids_are_the_tokenizers_own():
    tokenizer = tiny_tokenizer("bert")
    ids = special_token_ids(tokenizer)
    assert ids == sorted(tokenizer.all_special_ids)
    assert {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id} <= set(ids)
