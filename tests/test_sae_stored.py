"""SAEs in a store (any ``pyarrow.fs`` URI): loaded through a per-machine cached copy, and
registered by their URI. ``file://`` stands in for ``s3://`` here: the same code path."""

from __future__ import annotations

import pytest
import torch
from sqlmodel import Session

from saeray.catalogue import register_sae
from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae import load_sae
from tests.sae_fixtures import activations, saelens_config, saelens_tensors, write_saelens


def _write(folder, seed: int):
    tensors = {name: t + seed for name, t in saelens_tensors("standard").items()}
    return write_saelens(folder, tensors, saelens_config("standard"))


def _cached_copies(home) -> list:
    cache = home / "cache" / "saes"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def home(saeray_env):
    from pathlib import Path

    return Path(saeray_env["SAERAY_HOME"])


def test_a_stored_sae_loads_like_its_local_folder_and_is_copied_once(home, tmp_path):
    folder = _write(tmp_path / "store" / "sae", seed=0)
    uri = f"file://{folder}"
    x = activations()
    stored = load_sae(uri)
    assert torch.equal(stored.encode(x), load_sae(folder).encode(x))
    assert stored.source == uri
    assert len(_cached_copies(home)) == 1
    load_sae(uri)
    load_sae(f"{uri}/sae_weights.safetensors")  # a file's address loads its folder
    assert len(_cached_copies(home)) == 1


def test_a_folder_replaced_in_the_store_is_copied_anew(home, tmp_path):
    folder = tmp_path / "store" / "sae"
    _write(folder, seed=0)
    first = load_sae(f"file://{folder}")
    _write(folder, seed=1)  # same names, new weights (a requeued training job's rewrite)
    second = load_sae(f"file://{folder}")
    assert not torch.equal(first.W_enc, second.W_enc)
    assert torch.equal(second.W_enc, load_sae(folder).W_enc)
    assert len(_cached_copies(home)) == 2


def test_bad_store_addresses_are_clear_errors(home, tmp_path):
    with pytest.raises(NotFoundError, match="no file or folder at file://.*missing"):
        load_sae(f"file://{tmp_path}/missing")
    with pytest.raises(InvalidInputError, match="not an address saeray can read"):
        load_sae("nosuchscheme://bucket/sae")
    with pytest.raises(InvalidInputError, match="path_in_repo and revision are for Hugging"):
        load_sae(f"file://{tmp_path}", path_in_repo="sae")
    assert _cached_copies(home) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stored_sae_is_registered_by_its_uri(engine, tmp_path):
    uri = f"file://{_write(tmp_path / 'store' / 'sae', seed=0)}"
    with Session(engine) as session:
        row = register_sae(session, uri, hook_point="blocks.0.hook_resid_post")
        assert (row.source, row.path, row.name) == ("storage", uri, "sae")
