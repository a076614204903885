"""The language server as an editor meets it: start-up, memory, and inline-completion round trips.

The real server (``python -m server``) runs as a subprocess over stdio and is
driven by pygls' own ``LanguageClient``, one request at a time.

* Start-up: process start -> the ``diffill/status`` notification ``ready``
  (the server loads its model after ``initialize``), wall clock.  The precision
  the server chose is read from its "loaded ..." log message.
* Memory: VmHWM (peak resident set) from /proc/<pid>/status just before shutdown.
* Null request: ``diffill.status`` (no model work): JSON-RPC over stdio alone.
* Round trip: ``textDocument/inlineCompletion`` at the gap, each request on a
  freshly opened document URI (so the server's typed-through cache cannot
  answer).  Each case's first request is timed on its own (the first one of
  the first case is the first request after start-up).  The same job
  (``server.jobs.cursor_fills`` with the same settings) is timed in-process on
  the benchmark's engine just before each later request; request time minus
  engine time is the protocol overhead (JSON-RPC, document handling, the
  worker-thread hand-off, the status notifications).
"""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from server.config import parse_settings
from server.jobs import cursor_fills

from .timing import now_ms, summary

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 300
LOADED = re.compile(r"loaded .* \((.*), (\w+)\)$")  # model/loading.py: "loaded PATH (type, class, precision)"


class BenchClient(LanguageClient):
    def __init__(self):
        super().__init__("diffill-bench", "1")
        self.states: list[str] = []
        self.settled = asyncio.Event()  # a ready (or error) status arrived
        self.error: str | None = None
        self.precision: str | None = None
        self.stderr_tail: list[str] = []

        @self.feature("diffill/status")
        def status(params):
            state = params["state"] if isinstance(params, dict) else getattr(params, "state", None)
            self.states.append(state)
            if state == "error":
                self.error = params["message"] if isinstance(params, dict) else getattr(params, "message", "")
            if state in ("ready", "error"):
                self.settled.set()

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params):
            found = LOADED.search(params.message)
            if found:
                self.precision = found.group(2)

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params):
            self.stderr_tail.append(f"showMessage: {params.message}")

    @property
    def pid(self) -> int:
        return self._server.pid

    async def drain_stderr(self) -> None:
        """Read the server's stderr so a chatty server can never block on a full pipe."""
        while line := await self._server.stderr.readline():
            self.stderr_tail = (self.stderr_tail + [line.decode(errors="replace").rstrip()])[-20:]


def memory_of(pid: int) -> dict:
    """VmHWM (peak) and VmRSS (now) of a process, in MB (10^6 bytes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return out


async def start_server(model: str | None, options: dict) -> tuple[BenchClient, dict]:
    """Start the server, initialize it, and wait for ``ready``; returns the client and the start-up times."""
    client = BenchClient()
    env = dict(os.environ, DIFFILL_LOG_DIR=tempfile.mkdtemp(prefix="diffill-bench-log-"))
    cmd = ["-m", "server"] + (["--model", str(model)] if model else [])
    t0 = now_ms()
    await client.start_io(sys.executable, *cmd, env=env, cwd=str(REPO))
    drain = asyncio.create_task(client.drain_stderr())
    await client.initialize_async(types.InitializeParams(
        process_id=os.getpid(), initialization_options={"diffill": options},
        capabilities=types.ClientCapabilities(
            general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities()))))
    t_init = now_ms()
    client.initialized(types.InitializedParams())
    try:
        await asyncio.wait_for(client.settled.wait(), READY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise RuntimeError(f"server not ready after {READY_TIMEOUT_S}s; stderr: {client.stderr_tail}") from None
    if client.error:
        raise RuntimeError(f"server failed to load the model: {client.error}")
    t_ready = now_ms()
    client.drain_task = drain
    return client, {"to_initialize_ms": round(t_init - t0, 1), "to_ready_ms": round(t_ready - t0, 1),
                    "precision": client.precision,
                    **{f"{k}_at_ready_mb": v for k, v in memory_of(client.pid).items()}}


async def stop_server(client: BenchClient) -> None:
    try:
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        await asyncio.wait_for(client.stop(), 30)
    except (asyncio.TimeoutError, RuntimeError):
        if client._server.returncode is None:
            client._server.kill()  # only ever the server this benchmark started
            await client._server.wait()
    drain = getattr(client, "drain_task", None)
    if drain is not None:
        try:
            await asyncio.wait_for(drain, 5)
        except asyncio.TimeoutError:
            drain.cancel()


def utf16_position(text_before: str) -> types.Position:
    line = text_before.count("\n")
    last = text_before.rsplit("\n", 1)[-1]
    return types.Position(line, len(last.encode("utf-16-le")) // 2)


async def inline_request(client: BenchClient, uri: str, language: str, prefix: str, suffix: str):
    """Open a new document holding prefix+suffix and ask for an inline completion at the gap.
    Only the request is timed; the open is given 20 ms to be processed first."""
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=prefix + suffix)))
    await asyncio.sleep(0.02)
    t0 = now_ms()
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=utf16_position(prefix),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    ms = now_ms() - t0
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    return result, ms


async def round_trips(client: BenchClient, engine, cases: list[dict], options: dict, reps: int) -> list[dict]:
    """Per case ({name, language, inputs}): the first request's time, then per request: its time, the
    in-process engine time, and their difference."""
    settings, problems = parse_settings(options)
    if problems:
        raise ValueError(f"bad server options {options}: {problems}")
    out = []
    for c, case in enumerate(cases):
        ext = ".py" if case["language"] == "python" else ".txt"
        warm = case["inputs"][0]
        _, first_ms = await inline_request(client, f"file:///tmp/diffill-bench/first-{c}{ext}", case["language"],
                                           warm["prefix"], warm["suffix"])
        warm_plan = cursor_fills(warm["prefix"] + warm["suffix"], len(warm["prefix"]), settings, settings.candidates)
        warm_plan.run(engine, None)
        rows = []
        for r in range(reps):
            x = case["inputs"][r % len(case["inputs"])]
            job = cursor_fills(x["prefix"] + x["suffix"], len(x["prefix"]), settings, settings.candidates)
            t0 = now_ms()
            texts = job.run(engine, None)
            engine_ms = now_ms() - t0
            result, lsp_ms = await inline_request(client, f"file:///tmp/diffill-bench/{c}-{r}{ext}",
                                                  case["language"], x["prefix"], x["suffix"])
            served = [item.insert_text for item in result.items] if result else []
            rows.append({"input": x["id"], "lsp_ms": round(lsp_ms, 3), "engine_ms": round(engine_ms, 3),
                         "same_texts": served == texts, "served": served, "in_process": texts})
        # the first input comes round again at r = 0: its time warm, the fair yardstick for the first request
        out.append({"case": case["name"], "language": case["language"], "first_ms": round(first_ms, 1),
                    "first_again_ms": rows[0]["lsp_ms"] if rows else None,
                    "lsp": summary([r["lsp_ms"] for r in rows]), "engine": summary([r["engine_ms"] for r in rows]),
                    "overhead_p50_ms": round(statistics.median(r["lsp_ms"] - r["engine_ms"] for r in rows), 2),
                    "same_texts": all(r["same_texts"] for r in rows), "rows": rows})
    return out


async def null_round_trips(client: BenchClient, reps: int) -> tuple[dict, dict]:
    """``workspace/executeCommand diffill.status``: answered on the event loop with no model work, so it
    times JSON-RPC over stdio alone (a lower bound for the overhead above).  Also returns its answer."""
    params = types.ExecuteCommandParams(command="diffill.status")
    status = await client.workspace_execute_command_async(params)
    ms = []
    for _ in range(reps):
        t0 = now_ms()
        await client.workspace_execute_command_async(params)
        ms.append(now_ms() - t0)
    return summary(ms), status


async def run(model: str | None, engine, cases: list[dict], threads: int, reps: int, startup_reps: int,
              precision: str) -> dict:
    """Start the server ``startup_reps`` times; the first session also does the round trips."""
    options = {"threads": threads, "precision": precision}
    starts, memory, trips, null, status = [], {}, [], {}, {}
    for i in range(max(1, startup_reps)):
        print(f"  server start {i + 1}/{max(1, startup_reps)}", file=sys.stderr, flush=True)
        client, startup = await start_server(model, options)
        starts.append(startup)
        try:
            if i == 0:
                trips = await round_trips(client, engine, cases, options, reps)
                null, status = await null_round_trips(client, reps)
                memory = memory_of(client.pid)
        finally:
            await stop_server(client)
    return {"server_settings": (status or {}).get("settings", options), "server_model": (status or {}).get("model"),
            "precision": starts[0]["precision"], "first_request_ms": trips[0]["first_ms"] if trips else None,
            "first_request_again_ms": trips[0]["first_again_ms"] if trips else None,
            "startup": {"runs": starts, **summary([s["to_ready_ms"] for s in starts])},
            "peak_rss_mb": memory.get("VmHWM"), "rss_after_requests_mb": memory.get("VmRSS"),
            "round_trips": trips, "null_request": null}


def run_sync(*args, **kw) -> dict:
    t0 = time.perf_counter()
    out = asyncio.run(run(*args, **kw))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
