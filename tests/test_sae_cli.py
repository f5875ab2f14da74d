"""``saeray sae inspect``: the handler registered by saeray.cli.sae, run on real files."""

import argparse
import json

import pytest

from saeray.cli.sae import register
from saeray.errors import NotFoundError
from tests.sae_fixtures import D_IN, D_SAE, HOOK, saelens_config, saelens_tensors, write_saelens


def run(argv):
    parser = argparse.ArgumentParser(prog="saeray")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def topk_folder(tmp_path):
    return write_saelens(tmp_path / "sae", saelens_tensors("topk"), saelens_config("topk", k=8))


def test_inspect_prints_format_architecture_sizes_hook_and_model(topk_folder, capsys):
    assert run(["sae", "inspect", str(topk_folder)]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    fields = {key: value.strip() for key, value in lines.items()}
    assert fields["format"] == "saelens"
    assert fields["architecture"] == "topk (k=8)"
    assert (fields["d_in"], fields["d_sae"]) == (str(D_IN), str(D_SAE))
    assert fields["hook"] == f"{HOOK} (layer 8)"
    assert fields["model"] == "gpt2"


def test_inspect_json_and_explicit_format(topk_folder, capsys):
    assert run(["sae", "inspect", str(topk_folder), "--format", "saelens", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hook_layer"] == 8 and info["k"] == 8 and info["source"] == str(topk_folder)


def test_inspect_reports_user_errors_as_saeray_errors(tmp_path):
    # The CLI entry point prints SaerayError as one line; the handler only raises it.
    with pytest.raises(NotFoundError, match="no file or folder"):
        run(["sae", "inspect", str(tmp_path / "missing")])


def test_inspect_rejects_unknown_formats_at_parse_time(topk_folder):
    with pytest.raises(SystemExit):
        run(["sae", "inspect", str(topk_folder), "--format", "nope"])
