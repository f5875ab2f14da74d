"""SAE files written the way each publishing library writes them, for the SAE tests.

Every writer follows its library's own code: file names, tensor names and orientations,
dtypes and config keys. The weights are random (or a tight frame, which reconstructs
exactly), small enough that a whole test file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import torch
from safetensors.torch import save_file

D_IN = 16
D_SAE = 48
HOOK = "blocks.8.hook_resid_post"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed)) * scale


def activations(n: int = 12, d_in: int = D_IN, seed: int = 99) -> torch.Tensor:
    return randn(n, d_in, seed=seed)


def saelens_tensors(
    architecture: str, d_in: int = D_IN, d_sae: int = D_SAE, seed: int = 0
) -> dict[str, torch.Tensor]:
    """SAELens state dict names and shapes: W_enc [d_in, d_sae], W_dec [d_sae, d_in]."""
    tensors = {
        "W_enc": randn(d_in, d_sae, seed=seed, scale=0.5),
        "W_dec": randn(d_sae, d_in, seed=seed + 1, scale=0.5),
        "b_dec": randn(d_in, seed=seed + 2, scale=0.1),
    }
    if architecture == "gated":
        tensors["b_gate"] = randn(d_sae, seed=seed + 3, scale=0.2)
        tensors["b_mag"] = randn(d_sae, seed=seed + 4, scale=0.2)
        tensors["r_mag"] = randn(d_sae, seed=seed + 5, scale=0.2)
    else:
        tensors["b_enc"] = randn(d_sae, seed=seed + 3, scale=0.2)
    if architecture == "jumprelu":
        tensors["threshold"] = randn(d_sae, seed=seed + 6, scale=0.3).abs()
    return tensors


def saelens_config(
    architecture: str, d_in: int = D_IN, d_sae: int = D_SAE, **overrides: Any
) -> dict[str, Any]:
    """A SAELens 6.x cfg.json as ``SAEConfig.to_dict`` writes it."""
    config: dict[str, Any] = {
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.5.1",
            "sae_lens_training_version": "6.5.1",
            "model_name": "gpt2",
            "hook_name": HOOK,
            "hook_head_index": None,
            "prepend_bos": True,
            "dataset_path": "monology/pile-uncopyrighted",
            "context_size": 128,
            "neuronpedia_id": None,
        },
        "architecture": architecture,
    }
    if architecture == "topk":
        config.update(k=8, rescale_acts_by_decoder_norm=False)
    config.update(overrides)
    return config


def legacy_saelens_config(d_in: int = D_IN, d_sae: int = D_SAE, **overrides: Any) -> dict[str, Any]:
    """A pre-6.0 (SAELens 3.x-5.x) flat cfg.json."""
    config: dict[str, Any] = {
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "model_name": "gpt2-small",
        "hook_name": "blocks.3.hook_resid_pre",
        "hook_layer": 3,
        "hook_head_index": None,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "sae_lens_training_version": "3.0.0",
        "prepend_bos": True,
        "dataset_path": "Skylion007/openwebtext",
        "context_size": 128,
        "normalize_activations": False,
    }
    config.update(overrides)
    return config


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_saelens(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    sparsity: torch.Tensor | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "cfg.json", config)
    save_file(
        {name: t.contiguous() for name, t in tensors.items()}, folder / "sae_weights.safetensors"
    )
    if sparsity is not None:
        save_file({"sparsity": sparsity}, folder / "sparsity.safetensors")
    return folder


def sparsify_tensors(
    d_in: int = D_IN, d_sae: int = D_SAE, seed: int = 10
) -> dict[str, torch.Tensor]:
    """``SparseCoder``'s state dict: encoder is an nn.Linear, W_dec [d_sae, d_in]."""
    return {
        "encoder.weight": randn(d_sae, d_in, seed=seed, scale=0.5),
        "encoder.bias": randn(d_sae, seed=seed + 1, scale=0.2),
        "W_dec": randn(d_sae, d_in, seed=seed + 2, scale=0.5),
        "b_dec": randn(d_in, seed=seed + 3, scale=0.1),
    }


def write_sparsify(
    run: Path,
    hookpoint: str,
    tensors: dict[str, torch.Tensor],
    k: int = 6,
    d_in: int = D_IN,
    **cfg_overrides: Any,
) -> Path:
    """``SparseCoder.save_to_disk`` (cfg.json + sae.safetensors) under the trainer's run folder."""
    folder = run / hookpoint
    folder.mkdir(parents=True, exist_ok=True)
    d_sae = tensors["encoder.bias"].shape[0]
    cfg = {
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": d_sae,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d_in,
    }
    cfg.update(cfg_overrides)
    write_json(folder / "cfg.json", cfg)
    save_file(tensors, folder / "sae.safetensors")
    write_json(run / "config.json", {"model": "EleutherAI/pythia-70m", "hookpoints": [hookpoint]})
    return folder


def write_dictionary_learning(
    folder: Path,
    dict_class: str,
    state_dict: dict[str, torch.Tensor],
    d_in: int = D_IN,
    d_sae: int = D_SAE,
    **trainer_extra: Any,
) -> Path:
    """``trainSAE``'s output: config.json {"trainer": ..., "buffer": ...} + ae.pt state_dict."""
    folder.mkdir(parents=True, exist_ok=True)
    trainer = {
        "dict_class": dict_class,
        "trainer_class": "TopKTrainer",
        "activation_dim": d_in,
        "dict_size": d_sae,
        "lr": 1e-4,
        "steps": 1000,
        "seed": 0,
        "device": "cpu",
        "layer": 3,
        "lm_name": "EleutherAI/pythia-70m-deduped",
        "wandb_name": dict_class,
        "submodule_name": "resid_post_layer_3",
    }
    trainer.update(trainer_extra)
    buffer = {
        "d_submodule": d_in,
        "io": "out",
        "n_ctxs": 3000,
        "ctx_len": 128,
        "refresh_batch_size": 512,
    }
    write_json(folder / "config.json", {"trainer": trainer, "buffer": buffer})
    torch.save(state_dict, folder / "ae.pt")
    return folder


def dictionary_learning_state(
    dict_class: str, d_in: int = D_IN, d_sae: int = D_SAE, k: int = 6, seed: int = 20
) -> dict[str, torch.Tensor]:
    """State dicts with each dictionary class's own parameter names and shapes."""
    enc = randn(d_sae, d_in, seed=seed, scale=0.5)  # nn.Linear(activation_dim, dict_size).weight
    dec = randn(
        d_in, d_sae, seed=seed + 1, scale=0.5
    )  # nn.Linear(dict_size, activation_dim).weight
    bias_sae = randn(d_sae, seed=seed + 2, scale=0.2)
    bias_in = randn(d_in, seed=seed + 3, scale=0.1)
    if dict_class == "AutoEncoder":
        return {
            "bias": bias_in,
            "encoder.weight": enc,
            "encoder.bias": bias_sae,
            "decoder.weight": dec,
        }
    if dict_class == "AutoEncoderNew":
        return {
            "encoder.weight": enc,
            "encoder.bias": bias_sae,
            "decoder.weight": dec,
            "decoder.bias": bias_in,
        }
    if dict_class == "GatedAutoEncoder":
        return {
            "decoder_bias": bias_in,
            "encoder.weight": enc,
            "r_mag": randn(d_sae, seed=seed + 4, scale=0.2),
            "gate_bias": bias_sae,
            "mag_bias": randn(d_sae, seed=seed + 5, scale=0.2),
            "decoder.weight": dec,
        }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(0.35, dtype=torch.float32),
            "decoder.weight": dec,
            "encoder.weight": enc,
            "encoder.bias": bias_sae,
            "b_dec": bias_in,
        }
    if dict_class == "JumpReluAutoEncoder":
        return {
            "W_enc": enc.T.contiguous(),
            "b_enc": bias_sae,
            "W_dec": dec.T.contiguous(),
            "b_dec": bias_in,
            "threshold": randn(d_sae, seed=seed + 6, scale=0.3).abs(),
        }
    if dict_class == "MatryoshkaBatchTopKSAE":
        return {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(0.3, dtype=torch.float32),
            "group_sizes": torch.tensor([d_sae // 4, d_sae // 4, d_sae // 2]),
            "W_enc": enc.T.contiguous(),
            "b_enc": bias_sae,
            "W_dec": dec.T.contiguous(),
            "b_dec": bias_in,
        }
    raise ValueError(dict_class)


def gemma_scope_arrays(
    d_in: int = D_IN, d_sae: int = D_SAE, seed: int = 30
) -> dict[str, np.ndarray]:
    """Gemma Scope params: W_enc [d_in, d_sae], W_dec [d_sae, d_in], biases, threshold."""
    rng = np.random.default_rng(seed)
    return {
        "W_enc": (rng.normal(size=(d_in, d_sae)) * 0.5).astype(np.float32),
        "W_dec": (rng.normal(size=(d_sae, d_in)) * 0.5).astype(np.float32),
        "b_enc": (rng.normal(size=d_sae) * 0.2).astype(np.float32),
        "b_dec": (rng.normal(size=d_in) * 0.1).astype(np.float32),
        "threshold": np.abs(rng.normal(size=d_sae) * 0.3).astype(np.float32),
    }


def write_gemma_scope(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **arrays)
    return folder


def write_gemma_scope_2(
    folder: Path, arrays: dict[str, np.ndarray], config: dict[str, Any] | None
) -> Path:
    """Gemma Scope 2: params.safetensors with lowercase keys, and config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    lower = {name.lower(): torch.from_numpy(array) for name, array in arrays.items()}
    save_file(lower, folder / "params.safetensors")
    if config is not None:
        write_json(folder / "config.json", config)
    return folder


def write_llama_scope(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    d_in: int = D_IN,
    d_sae: int = D_SAE,
    **hyper_overrides: Any,
) -> Path:
    """OpenMOSS lm-saes: hyperparams.json + checkpoints/final.safetensors (nn.Linear names)."""
    hyperparams = {
        "d_model": d_in,
        "d_sae": d_sae,
        "expansion_factor": d_sae // d_in,
        "hook_point_in": "blocks.5.hook_resid_post",
        "hook_point_out": "blocks.5.hook_resid_post",
        "use_decoder_bias": True,
        "apply_decoder_bias_to_pre_encoder": False,
        "act_fn": "jumprelu",
        "jump_relu_threshold": 0.4,
        "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": 9.0, "out": 9.0},
        "sparsity_include_decoder_norm": True,
        "top_k": 50,
    }
    hyperparams.update(hyper_overrides)
    write_json(folder / "hyperparams.json", hyperparams)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "checkpoints" / "final.safetensors")
    return folder


def llama_scope_tensors(
    d_in: int = D_IN, d_sae: int = D_SAE, seed: int = 40
) -> dict[str, torch.Tensor]:
    return {
        "encoder.weight": randn(d_sae, d_in, seed=seed, scale=0.5),
        "encoder.bias": randn(d_sae, seed=seed + 1, scale=0.2),
        "decoder.weight": randn(d_in, d_sae, seed=seed + 2, scale=0.5),
        "decoder.bias": randn(d_in, seed=seed + 3, scale=0.1),
    }


def tight_frame(d_in: int = D_IN, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_enc, W_dec)`` with decoder rows ``±q_i`` of a random orthonormal basis.

    Each coordinate of ``x`` in the basis is carried by exactly one of its two features,
    so ReLU, TopK(k=d_in) and ungated-gated SAEs reconstruct ``x`` exactly.
    """
    q, _ = torch.linalg.qr(randn(d_in, d_in, seed=seed))
    W_dec = torch.cat([q.T, -q.T])  # [2 * d_in, d_in], rows are unit vectors
    return W_dec.T.contiguous(), W_dec


def publish_to_hub_cache(
    cache: Path, repo_id: str, tree: Path, commit: str = COMMIT, ref: str = "main"
) -> Path:
    """Lay ``tree`` out as huggingface_hub caches a downloaded repo: content-addressed
    blobs, a snapshot of relative symlinks per commit, and refs naming the commit."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    for source in sorted(p for p in tree.rglob("*") if p.is_file()):
        data = source.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / source.relative_to(tree)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    write_ref = storage / "refs" / ref
    write_ref.parent.mkdir(parents=True, exist_ok=True)
    write_ref.write_text(commit)
    return snapshot


class FakeHub:
    """A local HTTP server answering the Hugging Face Hub's file and tree endpoints for
    one repo, served from a folder: what ``hf_hub_download`` and ``list_repo_tree`` use."""

    def __init__(self, repo_id: str, tree: Path, commit: str = COMMIT) -> None:
        self.repo_id, self.tree, self.commit = repo_id, tree, commit
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                tree_prefix = f"/api/models/{hub.repo_id}/tree/"
                resolve_prefix = f"/{hub.repo_id}/resolve/"
                if path.startswith(tree_prefix):
                    self._tree(path.removeprefix(tree_prefix))
                elif path.startswith(resolve_prefix):
                    self._file(path.removeprefix(resolve_prefix), body)
                else:
                    self._send(404, b"", {"X-Error-Code": "RepoNotFound"}, body)

            def _file(self, rest: str, body: bool) -> None:
                revision, _, filename = rest.partition("/")
                if revision not in ("main", hub.commit):
                    self._send(404, b"", {"X-Error-Code": "RevisionNotFound"}, body)
                    return
                source = hub.tree / filename
                if not source.is_file():
                    headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": hub.commit}
                    self._send(404, b"", headers, body)
                    return
                data = source.read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                self._send(200, data, {"X-Repo-Commit": hub.commit, "ETag": etag}, body)

            def _tree(self, rest: str) -> None:
                _, _, folder = rest.partition("/")
                root = hub.tree / folder
                entries = [
                    {
                        "type": "file",
                        "path": p.relative_to(hub.tree).as_posix(),
                        "size": p.stat().st_size,
                        "oid": "0" * 40,
                    }
                    for p in sorted(root.rglob("*"))
                    if p.is_file()
                ]
                self._send(
                    200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, True
                )

            def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler
