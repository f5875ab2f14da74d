"""``saeray sae inspect SOURCE``: what an SAE is, without writing anything."""

from __future__ import annotations

import argparse
import json

from saeray.sae import FORMATS, describe_sae


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sae", help="work with sparse autoencoders")
    commands = parser.add_subparsers(dest="sae_command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print an SAE's format, architecture, sizes, hook and model",
        description="SOURCE is a local folder or file, or hf://org/repo[@revision]/path/inside.",
    )
    inspect.add_argument("source", help="local path or hf://org/repo/path of the SAE")
    inspect.add_argument("--format", choices=sorted(FORMATS), help="skip format detection")
    inspect.add_argument("--revision", help="Hugging Face revision (branch, tag or commit)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=inspect_command)


def inspect_command(args: argparse.Namespace) -> int:
    info = describe_sae(args.source, format=args.format, revision=args.revision)
    if args.json:
        print(json.dumps(info.to_dict()))
        return 0
    architecture = info.architecture + (f" (k={info.k})" if info.k is not None else "")
    layer = f" (layer {info.hook_layer})" if info.hook_layer is not None else ""
    rows = {
        "source": info.source,
        "format": info.format,
        "architecture": architecture,
        "d_in": info.d_in,
        "d_sae": info.d_sae,
        "hook": f"{info.hook_name or 'unknown'}{layer}",
        "model": info.model_name or "unknown",
        "dtype": info.dtype,
    }
    for key, value in rows.items():
        print(f"{key + ':':<14}{value}")
    return 0
