"""Shared helpers for the language-server tests that start the real server with pytest-lsp, and a reference
model of what the *client* does with LSP positions (lines end at \\n, \\r\\n and \\r only; columns count code
units of the negotiated encoding), written independently of the server's code."""
from __future__ import annotations

import asyncio
import bisect
import os
import re
import sys

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

WIDTH = {"utf-8": 1, "utf-16": 2, "utf-32": 4}


def make_client():
    from pytest_lsp.client import make_test_lsp_client
    client = make_test_lsp_client()
    client.statuses = []
    client.applied = []

    @client.feature("diffill/status")
    def status(params):
        client.statuses.append(params)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        client.applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)
    return client


def server_config(*args, env=None, command=None):
    cmd = command or [sys.executable, "-m", "server"]
    return ClientServerConfig(server_command=[*cmd, *map(str, args)], client_factory=make_client,
                              server_env={**os.environ, **(env or {})} if env else None)


async def start(client: LanguageClient, spec: str = "visual-studio-code", options=None):
    client.init_result = await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(spec), initialization_options=options,
        workspace_folders=[types.WorkspaceFolder(uri="file:///tmp/diffill-test", name="t")]))
    return client.init_result


def encoding_of(client) -> str:
    enc = client.init_result.capabilities.position_encoding or "utf-16"
    return str(getattr(enc, "value", enc))


def state_of(s):
    return s["state"] if isinstance(s, dict) else s.state


def message_of(s):
    return s["message"] if isinstance(s, dict) else s.message


async def wait_for(pred, timeout=60.0, what="condition"):
    for _ in range(int(timeout * 20)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_ready(client, timeout=60):
    await wait_for(lambda: client.statuses and state_of(client.statuses[-1]) in ("ready", "error"), timeout,
                   f"a ready status (got {client.statuses})")
    return state_of(client.statuses[-1])


async def wait_status(client, state, contains="", timeout=60):
    await wait_for(lambda: any(state_of(s) == state and contains in message_of(s) for s in client.statuses),
                   timeout, f"status {state} with {contains!r} (got {client.statuses})")


def open_doc(client, text, uri, language="plaintext", version=1):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def close_doc(client, uri):
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))


def inline(client, uri, line, character, invoked=False):
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, character),
        context=types.InlineCompletionContext(trigger_kind=kind)))


async def code_actions(client, uri, start, end=None):
    end = end or start
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri),
        range=types.Range(types.Position(*start), types.Position(*end)),
        context=types.CodeActionContext(diagnostics=[])))


async def resolved(client, action):
    return action if action.edit is not None else await client.code_action_resolve_async(action)


def edits_of(edit: types.WorkspaceEdit):
    if edit.document_changes:
        return [e for change in edit.document_changes for e in change.edits]
    return [e for edits in edit.changes.values() for e in edits]


async def status(client) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))


# -- the client's side of positions ------------------------------------------------------------------------
def units(text: str, encoding: str) -> int:
    return len(text.encode(encoding + ("-le" if encoding != "utf-8" else ""), "surrogatepass")) // WIDTH[encoding]


def char_units(ch: str, encoding: str) -> int:
    return units(ch, encoding)


_BREAK = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins (the LSP's line ends: \\r\\n, \\r, \\n)."""
    return [0] + [m.end() for m in _BREAK.finditer(text)]


def client_position(text: str, offset: int, encoding: str) -> tuple[int, int]:
    starts = line_starts(text)
    line = bisect.bisect_right(starts, offset) - 1
    return line, units(text[starts[line]:offset], encoding)


def client_offset(text: str, line: int, character: int, encoding: str) -> int:
    starts = line_starts(text)
    if line >= len(starts):
        return len(text)
    i, used = starts[line], 0
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    while i < end and text[i] not in "\r\n" and used < character:
        used += char_units(text[i], encoding)
        i += 1
    return i


def apply_edits(text: str, edits, encoding: str) -> str:
    """Apply LSP TextEdits the way an editor does (all ranges refer to the text before any edit)."""
    spans = []
    for e in edits:
        r = e.range
        spans.append((client_offset(text, r.start.line, r.start.character, encoding),
                      client_offset(text, r.end.line, r.end.character, encoding), e.new_text))
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text
