"""Bad SAE files are refused with a message naming the file, the tensor and the fix."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae import load_sae
from tests.sae_fixtures import (
    D_IN,
    D_SAE,
    dictionary_learning_state,
    gemma_scope_arrays,
    saelens_config,
    saelens_tensors,
    sparsify_tensors,
    write_dictionary_learning,
    write_gemma_scope,
    write_saelens,
    write_sparsify,
)


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def saelens_folder(tmp_path, architecture="standard", **changes):
    tensors = saelens_tensors(architecture)
    tensors.update(changes)
    return write_saelens(
        tmp_path / "sae",
        {k: v for k, v in tensors.items() if v is not None},
        saelens_config(architecture),
    )


def test_missing_weight_file(tmp_path):
    folder = saelens_folder(tmp_path)
    (folder / "sae_weights.safetensors").unlink()
    with pytest.raises(NotFoundError, match=r"no sae_weights\.safetensors.*copy or download"):
        load_sae(folder)


def test_missing_path(tmp_path):
    with pytest.raises(NotFoundError, match="no file or folder at .*hf://"):
        load_sae(tmp_path / "nowhere")


def test_unknown_format_name(tmp_path):
    with pytest.raises(
        InvalidInputError, match="unknown SAE format 'nope'; known formats: saeray, saelens"
    ):
        load_sae(saelens_folder(tmp_path), format="nope")


def test_folder_of_no_known_format(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 16)
    with pytest.raises(NotFoundError, match=r"no SAE found .*saelens: cfg\.json"):
        load_sae(tmp_path)


def test_explicit_format_that_does_not_match_the_files(tmp_path):
    with pytest.raises(NotFoundError, match=r"no params\.npz"):
        load_sae(saelens_folder(tmp_path), format="gemma_scope")


def test_folder_with_two_formats_is_ambiguous(tmp_path):
    folder = saelens_folder(tmp_path)
    write_gemma_scope(folder, gemma_scope_arrays())
    with pytest.raises(
        InvalidInputError, match=r"several SAE formats \(saelens, gemma_scope\).*format="
    ):
        load_sae(folder)
    assert load_sae(folder, format="gemma_scope").format == "gemma_scope"


def test_missing_tensor(tmp_path):
    with pytest.raises(
        InvalidInputError,
        match=r"sae_weights\.safetensors has no tensor 'W_enc' \(it has: W_dec, b_dec, b_enc\)",
    ):
        load_sae(saelens_folder(tmp_path, W_enc=None))


def test_transposed_encoder(tmp_path):
    transposed = saelens_tensors("standard")["W_enc"].T.contiguous()
    with pytest.raises(
        InvalidInputError,
        match=rf"'W_enc' .* shape \({D_SAE}, {D_IN}\); expected \({D_IN}, {D_SAE}\).*transposed",
    ):
        load_sae(saelens_folder(tmp_path, W_enc=transposed))


def test_wrong_shape(tmp_path):
    with pytest.raises(
        InvalidInputError,
        match=rf"'W_dec' .* has shape \({D_SAE}, {D_IN + 1}\); expected \({D_SAE}, {D_IN}\)",
    ):
        load_sae(saelens_folder(tmp_path, W_dec=torch.zeros(D_SAE, D_IN + 1)))
    with pytest.raises(
        InvalidInputError,
        match=rf"'threshold' .* has shape \({D_SAE - 1},\); expected \({D_SAE},\)",
    ):
        load_sae(saelens_folder(tmp_path / "j", "jumprelu", threshold=torch.ones(D_SAE - 1)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path, bad):
    W_dec = saelens_tensors("standard")["W_dec"]
    W_dec[3, 2] = bad
    with pytest.raises(
        InvalidInputError, match=r"'W_dec' in .*sae_weights\.safetensors contains NaN or Inf"
    ):
        load_sae(saelens_folder(tmp_path, W_dec=W_dec))


def test_config_whose_d_in_disagrees_with_the_weights(tmp_path):
    folder = saelens_folder(tmp_path)
    config = json.loads((folder / "cfg.json").read_text())
    config["d_in"] = D_IN * 2
    (folder / "cfg.json").write_text(json.dumps(config))
    with pytest.raises(
        InvalidInputError, match=rf"cfg\.json says d_in={D_IN * 2} but b_dec in .* has {D_IN}"
    ):
        load_sae(folder)


def test_dictionary_learning_config_disagreeing_with_weights(tmp_path):
    folder = write_dictionary_learning(
        tmp_path, "AutoEncoder", dictionary_learning_state("AutoEncoder"), dict_size=D_SAE + 8
    )
    with pytest.raises(InvalidInputError, match=rf"trainer\.dict_size={D_SAE + 8}"):
        load_sae(folder)


def test_pt_file_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    state = dictionary_learning_state("AutoEncoder")
    folder = write_dictionary_learning(tmp_path / "ae", "AutoEncoder", state)
    torch.save({**state, "extra": Payload(marker)}, folder / "ae.pt")
    with pytest.raises(
        InvalidInputError, match=r"refusing .*ae\.pt: it holds pickled Python objects"
    ):
        load_sae(folder)
    assert not marker.exists()


def test_pt_file_that_is_not_a_state_dict(tmp_path):
    folder = write_dictionary_learning(
        tmp_path, "AutoEncoder", dictionary_learning_state("AutoEncoder")
    )
    torch.save([torch.zeros(3)], folder / "ae.pt")
    with pytest.raises(InvalidInputError, match="not a state_dict"):
        load_sae(folder)


def test_corrupt_files(tmp_path):
    folder = saelens_folder(tmp_path)
    (folder / "sae_weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InvalidInputError, match="cannot read .*safetensors"):
        load_sae(folder)
    (folder / "cfg.json").write_text("{broken")
    with pytest.raises(InvalidInputError, match=r"cannot read .*cfg\.json as JSON"):
        load_sae(folder)


def test_integer_weights_are_refused(tmp_path):
    folder = saelens_folder(tmp_path)
    tensors = saelens_tensors("standard")
    tensors["b_enc"] = torch.zeros(D_SAE, dtype=torch.int64)
    save_file(tensors, folder / "sae_weights.safetensors")
    with pytest.raises(InvalidInputError, match="'b_enc' .* is torch.int64, not floating point"):
        load_sae(folder)


def test_topk_without_k_and_sparsify_without_k(tmp_path):
    config = saelens_config("topk")
    del config["k"]
    write_saelens(tmp_path / "a", saelens_tensors("topk"), config)
    with pytest.raises(InvalidInputError, match="needs an integer k"):
        load_sae(tmp_path / "a")
    folder = write_sparsify(tmp_path / "b", "layers.0", sparsify_tensors(), k=D_SAE + 1)
    with pytest.raises(InvalidInputError, match=f"k={D_SAE + 1} is out of range"):
        load_sae(folder)


def test_unavailable_device_is_a_user_error(tmp_path):
    folder = saelens_folder(tmp_path)
    with pytest.raises(InvalidInputError, match="device"):
        load_sae(folder, device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="CUDA is not available"):
            load_sae(folder, device="cuda")
