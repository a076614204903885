"""``diffill/status`` notifications: loading, ready, busy, error (with a message) for status bars."""
from __future__ import annotations

STATUS_METHOD = "diffill/status"


class StatusFeature:
    def __init__(self, server):
        self.server = server
        self.state = "loading"
        self.message = ""

    def from_worker(self, state: str, message: str) -> None:
        """Called on the worker thread; the notification is sent from the event loop."""
        self.server.call_soon(self.publish, state, message)

    def publish(self, state: str, message: str, force: bool = False) -> None:
        if (state, message) == (self.state, self.message) and state != "error" and not force:
            return
        self.state, self.message = state, message
        if self.server.initialized:
            self.server.protocol.notify(STATUS_METHOD, {"state": state, "message": message})

    def snapshot(self) -> dict:
        model = self.server.worker.engine.loaded.path if self.server.worker.engine else None
        return {"state": self.state, "message": self.message, "model": str(model) if model else None,
                "settings": {k: getattr(self.server.settings, k) for k in self.server.settings.__dataclass_fields__}}
