"""``diffill/status`` notifications: loading, ready, busy, error (with a message) for status bars.

An ``error`` (a model that cannot be loaded, a fill that failed) is also shown
once with ``window/showMessage``; the same message is not shown again for a
minute, so a failing model cannot flood the editor with pop-ups.
"""
from __future__ import annotations

import os
import time

from lsprotocol import types

STATUS_METHOD = "diffill/status"
REPEAT_AFTER_S = 60.0


class StatusFeature:
    def __init__(self, server):
        self.server = server
        self.state = "loading"
        self.message = ""
        self._shown: dict[str, float] = {}  # error message -> when it was last shown

    def from_worker(self, state: str, message: str) -> None:
        """Called on the worker thread; the notification is sent from the event loop."""
        self.server.call_soon(self.publish, state, message)

    def publish(self, state: str, message: str, force: bool = False) -> None:
        if (state, message) == (self.state, self.message) and state != "error" and not force:
            return
        self.state, self.message = state, message
        if self.server.initialized:
            self.server.protocol.notify(STATUS_METHOD, {"state": state, "message": message})
            if state == "error":
                self._show_error(message)

    def _show_error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._shown.get(message, -REPEAT_AFTER_S) < REPEAT_AFTER_S:
            return
        if len(self._shown) > 100:
            self._shown.clear()
        self._shown[message] = now
        self.server.show(message, types.MessageType.Error)

    def snapshot(self) -> dict:
        worker = self.server.worker
        model = worker.engine.loaded.path if worker.engine else None
        return {"state": self.state, "message": self.message, "model": str(model) if model else None,
                "settings": {k: getattr(self.server.settings, k) for k in self.server.settings.__dataclass_fields__},
                "jobs": dict(worker.stats), "completions": dict(self.server.completions.stats), "pid": os.getpid()}
