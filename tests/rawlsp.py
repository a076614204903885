"""A bare JSON-RPC client over a server process's pipes, for what pytest-lsp cannot send: requests before
``initialize``, malformed params, garbage bytes, and a client that disappears without ``shutdown``."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

SERVER = [sys.executable, "-m", "server"]


def frame(payload) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawClient:
    def __init__(self, args=(), env=None):
        self.proc = subprocess.Popen(SERVER + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next = 0

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif line in (b"\r\n", b"\n") and length is not None:
                    break
            self.messages.put(json.loads(out.read(length)))

    def send(self, payload) -> None:
        self.proc.stdin.write(frame(payload))
        self.proc.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, method: str, params=None) -> int:
        self._next += 1
        self.send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        return self._next

    def notify(self, method: str, params=None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_for(self, pred, timeout: float = 60.0) -> dict:
        for m in self.seen:
            if pred(m):
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.messages.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(m)
            if m.get("method") == "workspace/configuration" and "id" in m:  # answer server requests
                self.send({"jsonrpc": "2.0", "id": m["id"], "result": [None]})
            elif "method" in m and "id" in m:
                self.send({"jsonrpc": "2.0", "id": m["id"], "result": None})
            if pred(m):
                return m
        raise AssertionError(f"timed out; saw {[x.get('method') or x.get('id') for x in self.seen]}")

    def response(self, msg_id: int, timeout: float = 60.0) -> dict:
        return self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def initialize(self, options=None, process_id: int | None = -1) -> dict:
        """``process_id``: -1 (default) sends ours, None sends null (the server then watches no process)."""
        rid = self.request("initialize", {"processId": os.getpid() if process_id == -1 else process_id,
                                          "rootUri": None, "capabilities": {},
                                          "initializationOptions": options})
        result = self.response(rid)
        self.notify("initialized", {})
        return result

    def exited(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
