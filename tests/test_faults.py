"""Issue 7, faults: a missing model directory, truncated weights, a tokenizer without a mask token, a model file
replaced while serving, the worker raising mid-denoise, and a client that goes away without ``shutdown`` /
``exit``.  Each is reported (``window/showMessage`` and the ``diffill/status`` notification) and the server
keeps answering what it can; when its client is gone, the server process is gone too.  The servers run a tiny
test model, or the model DIFFILL_EVIDENCE_MODEL names (tests/evidence.py), e.g. the shipped default.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from evidence import evidence_model, require_base
from lsp_helpers import (code_actions, inline, message_of, open_doc, server_config, start, state_of, status,
                         wait_for, wait_status)
from rawlsp import RawClient

HERE = Path(__file__).resolve().parent
MODEL, WHAT = evidence_model()
STATE = Path(tempfile.mkdtemp(prefix="diffill-faults-"))  # models dir and log dir of the servers below
ENV = {"DIFFILL_MODELS_DIR": str(STATE / "models"), "DIFFILL_LOG_DIR": str(STATE / "log")}
MISSING = str(STATE / "no-such-model")
aio = pytest.mark.asyncio(loop_scope="module")


# -- the worker thread, in process --------------------------------------------------------------------------------
class FakeEngine:
    loaded = type("Loaded", (), {"path": Path("/models/fake")})()


def make_worker():
    from server.worker import InferenceWorker
    statuses: list[tuple[str, str]] = []
    worker = InferenceWorker(lambda state, message: statuses.append((state, message)))
    worker.engine = FakeEngine()
    return worker, statuses


def test_a_job_raising_mid_denoise_is_reported_and_the_next_job_runs():
    worker, statuses = make_worker()
    try:
        def broken(engine, on_step):
            on_step(1, 4, None)
            raise RuntimeError("weights went bad")
        failed = worker.submit(broken, key=("doc", "inline"))
        with pytest.raises(RuntimeError, match="weights went bad"):
            failed.future.result(10)
        assert failed.step == 1 and failed.total == 4
        assert ("error", "a fill failed: weights went bad") in statuses
        ok = worker.submit(lambda engine, on_step: "fine", key=("doc", "inline"))
        assert ok.future.result(10) == "fine"
        for _ in range(100):  # published just after the result
            if statuses[-1] == ("ready", "/models/fake"):
                break
            time.sleep(0.02)
        assert statuses[-1] == ("ready", "/models/fake")
        for exc in (SystemExit(3), KeyboardInterrupt()):  # not even these stop the thread
            job = worker.submit(lambda engine, on_step, exc=exc: (_ for _ in ()).throw(exc))
            with pytest.raises(Exception, match="SystemExit|KeyboardInterrupt"):
                job.future.result(10)
        assert worker.submit(lambda engine, on_step: 42).future.result(10) == 42
        s = worker.stats
        assert (s["submitted"], s["completed"], s["failed"]) == (5, 2, 3)
    finally:
        worker.stop(wait=2)


def test_superseding_a_request_the_client_cancelled_still_answers_the_new_one():
    """A queued job whose request was cancelled (its future cancelled) and is then superseded by a newer one
    must not break the newer one (concurrent.futures refuses set_exception on a cancelled future)."""
    worker, _ = make_worker()
    gate = threading.Event()
    try:
        blocker = worker.submit(lambda engine, on_step: gate.wait(10), key="other")
        old = worker.submit(lambda engine, on_step: "old", key=("doc", "inline"))
        assert old.future.cancel()  # what asyncio.wrap_future does when the client cancels the request
        new = worker.submit(lambda engine, on_step: "new", key=("doc", "inline"))
        newest = worker.submit(lambda engine, on_step: "newest", key=("doc", "inline"))
        gate.set()
        assert blocker.future.result(10) is True
        assert newest.future.result(10) == "newest"
        assert new.future.exception(10).__class__.__name__ == "Superseded"
        s = worker.stats
        assert s["superseded"] == 2 and s["completed"] == 2
        assert s["submitted"] == s["superseded"] + s["cancelled"] + s["completed"] + s["failed"]
    finally:
        worker.stop(wait=2)


def test_a_failed_load_keeps_the_previous_model_serving(tmp_path):
    worker, statuses = make_worker()
    try:
        job = worker.load(str(tmp_path / "missing"), precision="fp32")
        with pytest.raises(Exception, match="not found"):
            job.future.result(30)
        assert isinstance(worker.engine, FakeEngine)  # still serving
        assert any(s == "error" and "not found" in m for s, m in statuses)
        assert worker.submit(lambda engine, on_step: engine.loaded.path).future.result(10) == Path("/models/fake")
    finally:
        worker.stop(wait=2)


# -- broken model directories and an injected fault, through the real server ---------------------------------
def weights_of(d: Path) -> Path:
    """The model dir's weights: model.safetensors, or a delta's delta.safetensors."""
    return sorted(d.glob("*.safetensors"))[0]


def broken_copy(kind: str, root: Path) -> Path:
    d = root / kind
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(MODEL, d)
    if kind == "truncated":
        weights = weights_of(d)
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "no-mask":
        configs = [d / name for name in ("tokenizer_config.json", "special_tokens_map.json") if (d / name).exists()]
        if not configs:
            pytest.skip(f"{WHAT} has no tokenizer of its own (it is its base's): the tiny model covers this")
        for path in configs:
            cfg = json.loads(path.read_text())
            cfg.pop("mask_token", None)
            path.write_text(json.dumps(cfg))
    return d


def fault_config():
    return server_config(env=ENV, command=[sys.executable, str(HERE / "fault_server.py")])


@pytest_lsp.fixture(config=fault_config(), scope="module")
async def faulty(lsp_client: LanguageClient):
    require_base(MODEL)
    await start(lsp_client, "visual-studio-code", {"diffill": {"model": MISSING, "maxTokens": 4, "candidates": 1}})
    yield
    await lsp_client.shutdown_session()


def use_model(client, path) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"model": str(path), "maxTokens": 4, "candidates": 1}}))


def shown(client, *words) -> bool:
    return any(m.type == types.MessageType.Error and all(w in m.message for w in words) for m in client.messages)


async def serve_copy_of_model(client, tmp_path_factory, name: str) -> Path:
    """Copy the tiny model to a fresh directory, switch the server to it and wait until it is ready."""
    d = tmp_path_factory.mktemp(name) / "model"
    shutil.copytree(MODEL, d)
    use_model(client, d)
    await wait_status(client, "ready", str(d))
    return d


async def completed(client) -> int:
    return (await status(client))["jobs"]["completed"]


@aio
async def test_missing_model_directory(faulty):
    await wait_status(faulty, "error", "not found")
    await wait_for(lambda: shown(faulty, "no-such-model", "not found"), 30, "a showMessage about the model")
    uri = "file:///tmp/diffill-faults/a.txt"
    open_doc(faulty, "alpha [MASK] beta", uri)
    assert not (await inline(faulty, uri, 0, 6, invoked=True)).items  # answered, nothing to offer
    fill = next(a for a in await code_actions(faulty, uri, (0, 0)) if a.title == "Diffill: fill gaps")
    fill = await faulty.code_action_resolve_async(fill)
    assert fill.edit is None and "not found" in fill.disabled.reason
    result = await faulty.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.fillGaps", arguments=[{"uri": uri, "position": {"line": 0, "character": 0}}]))
    assert result["applied"] is False and "not found" in result["reason"]
    snapshot = await status(faulty)
    assert snapshot["state"] == "error" and snapshot["model"] is None


@aio
@pytest.mark.parametrize("kind,words", [("truncated", ["weights"]), ("no-mask", ["mask token"])])
async def test_broken_model_directories(faulty, tmp_path_factory, kind, words):
    d = broken_copy(kind, tmp_path_factory.mktemp(kind))
    if weights_of(d).name == "delta.safetensors":  # a delta on a base: its weights are "the delta"
        words = [w.replace("weights", "delta") for w in words]
    faulty.messages.clear()
    use_model(faulty, d)
    await wait_status(faulty, "error", str(d))
    await wait_for(lambda: shown(faulty, str(d), *words), 30, f"a showMessage about {kind}")
    uri = f"file:///tmp/diffill-faults/{kind}.txt"
    open_doc(faulty, "alpha [MASK] beta", uri)
    assert isinstance(await inline(faulty, uri, 0, 6, invoked=True), types.InlineCompletionList)


@aio
async def test_model_file_replaced_while_serving(faulty, tmp_path_factory):
    d = await serve_copy_of_model(faulty, tmp_path_factory, "served")
    uri = "file:///tmp/diffill-faults/served.txt"
    open_doc(faulty, "The quick brown fox jumps over the lazy dog.", uri)
    before = await completed(faulty)
    await inline(faulty, uri, 0, 10, invoked=True)
    assert await completed(faulty) == before + 1
    weights = weights_of(d)
    with open(weights, "r+b") as fh:  # truncated in place (what a crashed copy leaves) ...
        fh.truncate(100)
    await inline(faulty, uri, 0, 11, invoked=True)
    garbage = d / "new.safetensors"  # ... then swapped for garbage (what a download in progress looks like)
    garbage.write_bytes(b"\x00not safetensors" * 64)
    os.replace(garbage, weights)
    await inline(faulty, uri, 0, 12, invoked=True)
    assert await completed(faulty) == before + 3  # the model in memory keeps serving
    faulty.messages.clear()
    use_model(faulty, MISSING)
    await wait_status(faulty, "error", "not found")
    use_model(faulty, d)  # reloading the replaced file fails clearly ...
    await wait_for(lambda: shown(faulty, str(d)), 30, "a showMessage about the replaced model")
    snapshot = await status(faulty)
    assert snapshot["model"] == str(d)  # ... and the model loaded before still serves
    await inline(faulty, uri, 0, 13, invoked=True)
    assert await completed(faulty) == before + 4


@aio
async def test_worker_raising_mid_denoise(faulty, tmp_path_factory):
    await serve_copy_of_model(faulty, tmp_path_factory, "good")
    faulty.messages.clear()
    bad, good = "file:///tmp/diffill-faults/bad.txt", "file:///tmp/diffill-faults/good.txt"
    open_doc(faulty, "INJECT_FAULT here: alpha [MASK] beta", bad)
    open_doc(faulty, "The quick brown fox [MASK] over the lazy dog.", good)
    result = await inline(faulty, bad, 0, 19, invoked=True)
    assert not result.items  # answered, with nothing
    await wait_status(faulty, "error", "injected fault at step")
    await wait_for(lambda: shown(faulty, "injected fault"), 30, "a showMessage about the fault")
    answer = await faulty.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.fillGaps", arguments=[{"uri": bad, "position": {"line": 0, "character": 0}}]))
    assert answer["applied"] is False and "injected fault" in answer["reason"]
    before = await completed(faulty)
    await inline(faulty, good, 0, 20, invoked=True)  # the next request is computed as usual
    assert await completed(faulty) == before + 1
    await wait_for(lambda: state_of(faulty.statuses[-1]) == "ready", 30, "ready again")
    jobs = (await status(faulty))["jobs"]
    assert jobs["failed"] >= 2
    errors = [message_of(s) for s in faulty.statuses if state_of(s) == "error" and "injected fault" in message_of(s)]
    step, total = map(int, re.search(r"step (\d+) of (\d+)", errors[0]).groups())
    assert 1 <= step < total  # it broke in the middle of denoising


# -- the client goes away ------------------------------------------------------------------------------------------
def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"  # exited, unreaped
    except (OSError, IndexError):
        return True


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_server_exits_when_its_input_closes_mid_job(tmp_path):
    c = RawClient(["--model", MODEL], env={"DIFFILL_LOG_DIR": str(tmp_path)})
    try:
        c.initialize(process_id=None)
        c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///x.txt", "languageId": "plaintext",
                                                           "version": 1, "text": "Hello [MASK] world " * 50}})
        c.request("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///x.txt"},
                                                    "position": {"line": 0, "character": 6},
                                                    "context": {"triggerKind": 1}})
        c.proc.stdin.close()  # no shutdown, no exit
        assert c.exited(30) == 0
    finally:
        c.close()


CLIENT = """
import json, subprocess, sys
server = subprocess.Popen([sys.executable, "-m", "server", "--model", sys.argv[1]], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"processId": None, "rootUri": None, "capabilities": {}}}).encode()
server.stdin.write(b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
server.stdin.flush()
server.stdout.readline()  # the server answers: it is up
print(server.pid, flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_server_exits_when_its_client_is_killed(tmp_path):
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(MODEL)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
                              env={**os.environ, "DIFFILL_LOG_DIR": str(tmp_path)})
    server_pid = None
    try:
        server_pid = int(client.stdout.readline())
        assert not gone(server_pid)
        client.send_signal(signal.SIGKILL)  # the editor crashes: no shutdown, no exit, its pipes close
        client.wait(10)
        assert wait_gone(server_pid), "the server outlived its client"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
        client.stdin.close()
        client.stdout.close()
        if server_pid and not gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_server_exits_when_the_editor_process_dies_even_if_its_input_stays_open(tmp_path):
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    c = RawClient(["--model", MODEL], env={"DIFFILL_LOG_DIR": str(tmp_path), "DIFFILL_PARENT_POLL_S": "0.2"})
    try:
        c.initialize(process_id=editor.pid)
        time.sleep(0.5)
        assert c.proc.poll() is None  # the editor is alive: the server stays
        editor.kill()
        editor.wait(10)
        assert c.exited(30) == 0  # our end of its stdin is still open: it noticed the editor is gone
    finally:
        if editor.poll() is None:
            editor.kill()
            editor.wait(10)
        c.close()
