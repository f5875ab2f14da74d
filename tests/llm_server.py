"""A fake LLM provider on 127.0.0.1 that speaks the OpenAI chat-completions and Anthropic
messages wire formats (usage included), for tests and the labeling benchmark.

Everything it does is deterministic and set per test:

- ``latency_s``: how long every admitted request takes.
- ``rpm``: a requests-per-minute limit it enforces itself (GCRA, ``burst_s`` seconds of
  tolerance), answering 429 with ``Retry-After`` and ``retry-after-ms`` past it.
- ``script(feature_index, *faults)``: the outcome of that feature's next calls, in order;
  a fault is ``"429"`` or ``"429:<retry-after seconds>"``, ``"500"``, ``"401"``, ``"400"``,
  ``"timeout"`` (hangs ``hang_s``), ``"malformed"`` (not JSON), ``"wrong_schema"`` (JSON
  without the fields asked for) or ``"ok"``.
- ``fault_rate`` and ``fault_kinds``: a fixed share of calls fail with one of the kinds,
  decided by a hash of (seed, feature, call number), so runs repeat exactly.
- ``api_key``: when set, requests must carry it (``Authorization: Bearer`` or ``x-api-key``).

The feature a request is about is read from ``Feature <n>`` in its first user message.
Run in a thread (``with LLMServer(...) as server:``) or as a process
(``python tests/llm_server.py --rpm 6000 ...``, which prints ``{"url": ...}`` and serves
``GET /stats``) so that a benchmark's client does not share its interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

FEATURE_PATTERN = re.compile(r"Feature (\d+)")
FAULT_KINDS = ("429", "500", "401", "400", "timeout", "malformed", "wrong_schema", "ok")
AnswerFn = Callable[[int, str], dict[str, Any]]


def default_answer(feature_index: int, model: str) -> dict[str, Any]:
    """A valid answer that depends only on the feature; a quarter has low confidence."""
    return {
        "label": f"tokens of kind {feature_index}",
        "category": f"Language > Test > Group {feature_index % 3}",
        "confidence": 0.55 if feature_index % 4 == 0 else 0.9,
    }


class LLMServer:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        rpm: float | None = None,
        burst_s: float = 1.0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = ("500", "malformed", "wrong_schema"),
        seed: int = 0,
        hang_s: float = 30.0,
        api_key: str | None = None,
        answer: AnswerFn = default_answer,
        port: int = 0,
    ) -> None:
        unknown = [kind for kind in fault_kinds if kind.partition(":")[0] not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; use {FAULT_KINDS}")
        self.latency_s = latency_s
        self.rpm = rpm
        self.burst_s = burst_s
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.seed = seed
        self.hang_s = hang_s
        self.api_key = api_key
        self.answer = answer
        self.port = port
        self._scripts: dict[int, list[str]] = {}
        self._calls: Counter[int] = Counter()
        self._tat = 0.0  # the server's own limiter (GCRA theoretical arrival time)
        self._lock = threading.Lock()
        self.received = 0
        self.admitted = 0
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.completed = 0
        self.keys_seen: set[str] = set()
        self.models_seen: set[str] = set()
        self.response_formats: list[Any] = []
        self.admitted_per_second: Counter[int] = Counter()
        self.first_admitted_at: float | None = None
        self.last_admitted_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- control -----------------------------------------------------------------------

    def script(self, feature_index: int, *faults: str) -> None:
        """Fix the outcome of ``feature_index``'s next calls, in order."""
        with self._lock:
            self._scripts.setdefault(feature_index, []).extend(faults)

    def calls(self, feature_index: int) -> int:
        return self._calls[feature_index]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            active = (
                self.last_admitted_at - self.first_admitted_at
                if self.first_admitted_at is not None and self.last_admitted_at is not None
                else 0.0
            )
            return {
                "received": self.received,
                "admitted": self.admitted,
                "rate_limited": self.rate_limited,
                "completed": self.completed,
                "faults": dict(self.faults),
                "active_s": active,
                "admitted_per_second": [
                    self.admitted_per_second[second] for second in range(int(active) + 1)
                ],
                "rpm_limit": self.rpm,
            }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # --- lifecycle ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/stats", self._stats)
        return app

    async def serve(self) -> None:
        """Bind and start serving on the running loop (sets ``port``)."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> LLMServer:
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="llm-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake LLM server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the server and end requests still hanging (injected timeouts)."""
        assert self._runner is not None
        await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- request handling --------------------------------------------------------------

    def _next_fault(self, feature: int) -> str:
        with self._lock:
            call = self._calls[feature]
            self._calls[feature] += 1
            scripted = self._scripts.get(feature)
            if scripted:
                return scripted.pop(0)
        if self.fault_rate <= 0:
            return "ok"
        digest = hashlib.sha256(f"{self.seed}:{feature}:{call}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw >= self.fault_rate:
            return "ok"
        return self.fault_kinds[digest[8] % len(self.fault_kinds)]

    def _admit(self) -> float | None:
        """None when admitted under the server's rpm limit, else seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            self.received += 1
            if self.rpm is not None:
                interval = 60.0 / self.rpm
                earliest = self._tat - self.burst_s
                if now < earliest:
                    self.rate_limited += 1
                    return earliest - now
                self._tat = max(self._tat, now) + interval
            self.admitted += 1
            self.first_admitted_at = self.first_admitted_at or now
            self.admitted_per_second[int(now - self.first_admitted_at)] += 1
            self.last_admitted_at = now
            return None

    def _authorised(self, request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        key = request.headers.get("x-api-key") or bearer
        with self._lock:
            self.keys_seen.add(key)
        return self.api_key is None or key == self.api_key

    async def _handle(self, request: web.Request, wire: str) -> web.Response:
        body = await request.json()
        with self._lock:
            self.models_seen.add(body.get("model", ""))
            if wire == "openai":
                self.response_formats.append(body.get("response_format"))
        if not self._authorised(request):
            return _error(wire, 401, "authentication_error", "invalid API key")
        wait = self._admit()
        if wait is not None:
            return _rate_limited(wire, wait)
        text = _conversation_text(body, wire)
        match = FEATURE_PATTERN.search(_first_user_text(body))
        feature = int(match.group(1)) if match else -1
        fault = self._next_fault(feature)
        kind, _, argument = fault.partition(":")
        if kind != "ok":
            with self._lock:
                self.faults[kind] += 1
        await asyncio.sleep(self.latency_s)
        if kind == "429":
            return _rate_limited(wire, float(argument or 1.0))
        if kind in ("500", "401", "400"):
            code = {"500": "server_error", "401": "authentication_error", "400": "bad_request"}
            return _error(wire, int(kind), code[kind], f"injected {kind}")
        if kind == "timeout":
            await asyncio.sleep(self.hang_s)
        if kind == "malformed":
            content = "Sure! The feature is about {label: tokens"
        elif kind == "wrong_schema":
            content = json.dumps({"name": "something", "score": 3})
        else:
            content = json.dumps(self.answer(feature, body.get("model", "")))
        with self._lock:
            self.completed += 1
        return _completion(wire, body.get("model", ""), content, len(text) // 4 + 1)

    async def _openai(self, request: web.Request) -> web.Response:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.Response:
        return await self._handle(request, "anthropic")

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _conversation_text(body: dict[str, Any], wire: str) -> str:
    system = _content_text(body.get("system")) if wire == "anthropic" else ""
    return system + "".join(_content_text(m.get("content")) for m in body.get("messages", []))


def _completion(wire: str, model: str, content: str, prompt_tokens: int) -> web.Response:
    output_tokens = len(content) // 4 + 1
    if wire == "openai":
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        }
    else:
        payload = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
        }
    return web.json_response(payload)


def _error(wire: str, status: int, code: str, message: str, **headers: str) -> web.Response:
    if wire == "openai":
        payload: dict[str, Any] = {"error": {"message": message, "type": code, "code": code}}
    else:
        payload = {"type": "error", "error": {"type": code, "message": message}}
    return web.json_response(payload, status=status, headers=headers)


def _rate_limited(wire: str, retry_after_s: float) -> web.Response:
    headers = {
        "Retry-After": str(max(1, math.ceil(retry_after_s))),
        "retry-after-ms": str(max(1, round(retry_after_s * 1000))),
    }
    return _error(wire, 429, "rate_limit_error", "rate limit reached", **headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--rpm", type=float, default=None, help="requests-per-minute limit")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds of rpm tolerance")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default="500,malformed,wrong_schema")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a timeout hangs")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    server = LLMServer(
        latency_s=args.latency,
        rpm=args.rpm,
        burst_s=args.burst,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(args.fault_kinds.split(",")),
        hang_s=args.hang,
        api_key=args.api_key,
        port=args.port,
    )

    async def serve_until_stopped() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        await server.serve()
        print(json.dumps({"url": server.url}), flush=True)
        await stopped.wait()

    asyncio.run(serve_until_stopped())


if __name__ == "__main__":
    main()
