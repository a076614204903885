"""Messages that real clients send in shapes the LSP types do not allow, repaired before pygls reads them.

pygls types every message with lsprotocol, and one field it cannot read fails the whole request with
InvalidParams, even a field Diffill never looks at.  Each repair here names the client that needs it;
the first message it repairs is logged (once per server, not once per keystroke).
"""
from __future__ import annotations

import logging

from lsprotocol import types

log = logging.getLogger("diffill.compat")
_logged: set[str] = set()


def _is_position(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("line"), int) and isinstance(value.get("character"), int)


def _is_range(value) -> bool:
    return isinstance(value, dict) and _is_position(value.get("start")) and _is_position(value.get("end"))


def _selected_completion_info(params) -> str | None:
    """vscode-languageclient 9.0.1 passes VS Code's ``SelectedCompletionInfo`` on unconverted, so its range
    arrives as ``vscode.Range.toJSON()``, ``[start, end]`` (microsoft/vscode-languageserver-node#1371).
    That form becomes a Range; any other malformed one is dropped (the field is optional and unused here)."""
    context = params.get("context") if isinstance(params, dict) else None
    info = context.get("selectedCompletionInfo") if isinstance(context, dict) else None
    if info is None or (isinstance(info, dict) and _is_range(info.get("range")) and isinstance(info.get("text"), str)):
        return None
    rng = info.get("range") if isinstance(info, dict) else None
    if isinstance(rng, list) and len(rng) == 2 and all(map(_is_position, rng)) and isinstance(info.get("text"), str):
        info["range"] = {"start": rng[0], "end": rng[1]}
        return "context.selectedCompletionInfo.range sent as [start, end]: read as a Range"
    del context["selectedCompletionInfo"]
    return f"context.selectedCompletionInfo is malformed ({str(info)[:200]}): ignored"


REPAIRS = {types.TEXT_DOCUMENT_INLINE_COMPLETION: _selected_completion_info}


def repair(message: dict) -> dict:
    """``message`` (a raw JSON-RPC object) with the known client mistakes in its params mended, in place."""
    method = message.get("method")
    fix = REPAIRS.get(method) if isinstance(method, str) else None
    what = fix(message.get("params")) if fix is not None else None
    if what and method not in _logged:
        _logged.add(method)
        log.warning("%s: %s (an old client; logged once)", method, what)
    return message
