"""Logging: a file under the platformdirs log dir, and ``window/logMessage`` to the editor.

Nothing is ever printed to stdout, which carries the protocol.
"""
from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

import platformdirs
from lsprotocol import types

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_file_path() -> Path:
    env = os.environ.get("DIFFILL_LOG_DIR")
    base = Path(env).expanduser() if env else Path(platformdirs.user_log_dir("diffill"))
    return base / "server.log"


class LspLogHandler(logging.Handler):
    """Forwards records to the client as ``window/logMessage`` once the server is connected."""

    LEVELS = {logging.ERROR: types.MessageType.Error, logging.WARNING: types.MessageType.Warning,
              logging.INFO: types.MessageType.Info}

    def __init__(self, server):
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self.server, "initialized", False):
            return
        try:
            kind = self.LEVELS.get(record.levelno, types.MessageType.Log)
            params = types.LogMessageParams(type=kind, message=self.format(record))
            # Records come from the worker thread too; only the event loop may write to the transport.
            self.server.call_soon(self._send, params)
        except Exception:  # the connection may be closing; logging must never raise
            pass

    def _send(self, params) -> None:
        try:
            self.server.window_log_message(params)
        except Exception:
            pass


def setup_logging(server, path: Path | None = None, level: int = logging.INFO) -> Path | None:
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        # stdout carries the protocol; stderr is copied into the editor's log (so every line would show
        # twice): the server logs to its file and to window/logMessage only.
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            root.removeHandler(h)
    path = path or log_file_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    except OSError:
        path = None  # read-only home: the editor still gets window/logMessage
    lsp = LspLogHandler(server)
    lsp.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("diffill").addHandler(lsp)
    logging.getLogger("diffusion_core").addHandler(lsp)
    return path
