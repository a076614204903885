"""Issue 7, bad input and security: positions, unknown documents, huge and odd documents, requests before
``initialize``, malformed messages, wrong-typed settings, ``diffill fill`` on bad input and ``--in-place``,
where weights may come from, and where the server listens.

Property tests (hypothesis) check that the position mapping and the canvas put every edit exactly on its gap
and leave every other character as it was, for arbitrary Unicode.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import types as pytypes
from pathlib import Path

import pytest
import pytest_lsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace.position_codec import PositionCodec
from pytest_lsp import LanguageClient

from conftest import session_model
from lsp_helpers import (apply_edits, client_offset, client_position, code_actions, edits_of, encoding_of, inline,
                         open_doc, resolved, server_config, start, status, wait_ready)
from rawlsp import RawClient
from server.documents import LspTextDocument, check_usable, offset_of, position_of, split_lines, DocumentProblem

ROOT = Path(__file__).resolve().parent.parent
MODEL = session_model("tiny")
ENCODINGS = ["utf-8", "utf-16", "utf-32"]

# Characters that break lines somewhere: the LSP's three, and those only str.splitlines knows.
ODD = "\r\n\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85\x00\t😀🎉e\u0301\ufeff日本"
any_char = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(ODD))
any_text = st.text(alphabet=any_char, max_size=40)


def make_doc(text: str, encoding: str) -> LspTextDocument:
    return LspTextDocument("file:///t.txt", source=text, position_codec=PositionCodec(encoding))


# -- property tests: positions, edits, canvas -------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(text=any_text)
def test_lines_end_only_where_the_lsp_says(text):
    lines = split_lines(text)
    assert "".join(lines) == text
    for i, line in enumerate(lines):
        body = line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith(("\r", "\n")) else line
        assert "\r" not in body and "\n" not in body  # no break inside a line
        assert i == len(lines) - 1 or len(body) < len(line)  # every line but the last ends with a break
    assert len(lines) == len(re.findall(r"\r\n|\r|\n", text)) + bool(re.search(r"[^\r\n]\Z", text))


@settings(max_examples=120, deadline=None)
@given(text=any_text, encoding=st.sampled_from(ENCODINGS))
def test_every_offset_maps_to_the_clients_position_and_back(text, encoding):
    doc = make_doc(text, encoding)
    for offset in range(len(text) + 1):
        if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
            continue  # inside a \r\n: not a position a client can name
        line, character = client_position(text, offset, encoding)
        assert position_of(doc, offset) == types.Position(line, character), (offset, text)
        assert offset_of(doc, types.Position(line, character)) == offset


@settings(max_examples=80, deadline=None)
@given(text=any_text, encoding=st.sampled_from(ENCODINGS), line=st.integers(0, 12), character=st.integers(0, 200))
def test_any_position_inside_the_document_lands_on_a_character_boundary(text, encoding, line, character):
    doc = make_doc(text, encoding)
    try:
        offset = offset_of(doc, types.Position(line, character))
    except JsonRpcInvalidParams as exc:
        assert "past the end" in str(exc)
        assert line >= len(split_lines(text))
        return
    assert 0 <= offset <= len(text)
    assert offset == client_offset(text, line, character, encoding)  # a column past the line end is clamped


no_marker_char = st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters="[]_"),
                           st.sampled_from(ODD))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), encoding=st.sampled_from(ENCODINGS), context=st.integers(0, 30))
def test_fill_gaps_edits_land_exactly_on_the_gaps(data, encoding, context):
    """Arbitrary Unicode around 1-4 markers (also at the very start and end): the edits, mapped to client
    positions and applied the way an editor applies them, replace the markers and nothing else."""
    from server.config import Settings
    from server.jobs import plan_job
    n = data.draw(st.integers(1, 4))
    outer = st.text(alphabet=no_marker_char, max_size=25)
    inner = st.text(alphabet=no_marker_char, min_size=1, max_size=25)
    pieces = [data.draw(outer)] + [data.draw(inner) for _ in range(n - 1)] + [data.draw(outer)]
    markers = [data.draw(st.sampled_from(["[MASK]", "___", "______"])) for _ in range(n)]
    fills = [data.draw(st.text(alphabet=any_char, max_size=12)) for _ in range(n)]
    text = pieces[0] + "".join(m + p for m, p in zip(markers, pieces[1:]))

    class Engine:  # what the model writes does not matter here, only where it goes
        def fill_gaps(self, got_pieces, on_step=None, settings=None, sizes=None):
            assert len(got_pieces) == n + 1
            assert sizes == [6 if m == "______" else None for m in markers]   # a long blank's size goes along
            return [pytypes.SimpleNamespace(texts=fills)]
    plan = plan_job("fillGaps", text, 0, 0, Settings(contextChars=context))
    replacements = plan.run(Engine(), None)
    doc = make_doc(text, encoding)
    edits = [types.TextEdit(types.Range(position_of(doc, r.start), position_of(doc, r.end)), r.text)
             for r in replacements]
    assert apply_edits(text, edits, encoding) == pieces[0] + "".join(f + p for f, p in zip(fills, pieces[1:]))


@settings(max_examples=80, deadline=None)
@given(text=any_text, encoding=st.sampled_from(ENCODINGS), data=st.data())
def test_incremental_changes_keep_the_servers_copy_exact(text, encoding, data):
    """didChange ranges computed by the client apply at the same place in the server's copy (pygls' own
    line splitting would put them a line off after a form feed or U+2028)."""
    doc = make_doc(text, encoding)
    for _ in range(3):
        a = data.draw(st.integers(0, len(text)))
        b = data.draw(st.integers(a, len(text)))
        if any(0 < o < len(text) and text[o - 1] == "\r" and text[o] == "\n" for o in (a, b)):
            continue
        new = data.draw(st.text(alphabet=any_char, max_size=6))
        rng = types.Range(types.Position(*client_position(text, a, encoding)),
                          types.Position(*client_position(text, b, encoding)))
        doc.apply_change(types.TextDocumentContentChangePartial(range=rng, text=new))
        text = text[:a] + new + text[b:]
        assert doc.source == text


special = st.sampled_from(["<mask>", "<s>", "</s>", "<null>", "<pad>", "[MASK]", "\x00", "\ufffd"])
canvas_text = st.lists(st.one_of(st.text(alphabet=any_char, max_size=8), special), max_size=5).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(canvas_text, min_size=2, max_size=4), data=st.data())
def test_canvas_puts_mask_slots_exactly_at_the_gaps(tiny_loaded, pieces, data):
    from diffusion_core.infer.canvas import build_canvas
    tok = tiny_loaded.tokenizer
    lengths = [data.draw(st.integers(1, 5)) for _ in pieces[1:]]
    canvas = build_canvas(tok, pieces, lengths, context_tokens=10_000)
    ids, known = canvas.ids.tolist(), canvas.known.tolist()
    slots = {i for s, e in canvas.gaps for i in range(s, e)}
    assert [e - s for s, e in canvas.gaps] == lengths
    assert {i for i, k in enumerate(known) if not k} == slots
    assert all(ids[i] == tok.mask_token_id for i in slots)
    # the known text between the gaps decodes back to exactly the pieces, less the spaces and tabs just
    # before a gap, which the canvas leaves to the gap (a fill brings its word's own leading space)
    bounds = [1 if known and tok.cls_token_id is not None else 0]
    for s, e in canvas.gaps:
        bounds += [s, e]
    bounds.append(len(ids) - (1 if tok.sep_token_id is not None else 0))
    kw = dict(clean_up_tokenization_spaces=False)
    expected = [p.rstrip(" \t") for p in pieces[:-1]] + pieces[-1:]
    for piece, (a, b) in zip(expected, zip(bounds[::2], bounds[1::2])):
        assert tok.decode(ids[a:b], **kw) == piece


json_value = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats() | st.text(max_size=10),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                          max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_settings_of_any_shape_never_fail_and_stay_typed(data):
    from dataclasses import fields
    from server.config import Settings, parse_settings
    names = [f.name for f in fields(Settings)]
    raw = data.draw(st.one_of(json_value, st.dictionaries(st.sampled_from(names), json_value),
                              st.dictionaries(st.just("diffill"), st.dictionaries(st.sampled_from(names), json_value))))
    parsed, problems = parse_settings(raw)
    assert all(isinstance(p, str) and p for p in problems)
    for f in fields(Settings):
        value, default = getattr(parsed, f.name), f.default
        if isinstance(default, tuple):
            assert isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        elif isinstance(default, float):
            assert isinstance(value, float) and value == value  # never NaN
        else:
            assert type(value) is type(default), (f.name, value)
    assert not re.compile(parsed.gapMarker).match("")


def test_settings_with_huge_integers_are_reported_not_raised():
    from server.config import parse_settings
    parsed, problems = parse_settings({"steps": 10**400, "threshold": -10**400})
    assert parsed.steps == 0 and parsed.threshold == 0.9 and len(problems) == 2


def test_documents_diffill_will_not_read():
    ok = make_doc("fine 😀 text", "utf-16")
    check_usable(ok, 100)
    with pytest.raises(DocumentProblem, match="more than maxDocumentChars"):
        check_usable(ok, 5)
    late_nul = make_doc("a" * 200_000 + "\x00", "utf-16")  # past the first 100 k characters too
    with pytest.raises(DocumentProblem, match="binary"):
        check_usable(late_nul, 10**6)
    with pytest.raises(DocumentProblem, match="unpaired surrogate"):
        check_usable(make_doc("bad \ud800 text", "utf-16"), 100)


# -- the server, over stdio --------------------------------------------------------------------------------------
aio = pytest.mark.asyncio(loop_scope="module")  # one server per module; its tests share its event loop
DIR = "file:///tmp/diffill-rel"


@pytest_lsp.fixture(config=server_config("--model", MODEL), scope="module")
async def client(lsp_client: LanguageClient):
    await start(lsp_client, "visual-studio-code", {"diffill": {"maxTokens": 4, "candidates": 1}})
    assert await wait_ready(lsp_client) == "ready"
    yield
    await lsp_client.shutdown_session()


async def alive(client):
    assert (await status(client))["state"] in ("ready", "busy", "error")


async def fill_all_gaps(client, uri, text):
    """Resolve 'fill gaps' for the whole document; return the edits and the text after applying them."""
    actions = await code_actions(client, uri, (0, 0))
    action = await resolved(client, next(a for a in actions if a.title == "Diffill: fill gaps"))
    assert action.edit is not None, action.disabled
    edits = edits_of(action.edit)
    return edits, apply_edits(text, edits, encoding_of(client))


def gaps_only_changed(before: str, after: str, marker=r"\[MASK\]|_{3,}") -> bool:
    """``after`` is ``before`` with each marker replaced by something, and nothing else changed."""
    pieces = re.split(marker, before)
    pattern = "".join(re.escape(p) + ("(.*?)" if i < len(pieces) - 1 else "") for i, p in enumerate(pieces))
    return re.fullmatch(pattern, after, re.S) is not None


@aio
async def test_unknown_document_is_a_clear_error_and_the_server_lives(client):
    with pytest.raises(Exception, match="is not open"):
        await inline(client, f"{DIR}/never-opened.py", 0, 0)
    with pytest.raises(Exception, match="is not open"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="diffill.fillGaps", arguments=[{"uri": f"{DIR}/nope.txt", "position": {"line": 0, "character": 0}}]))
    # a file that exists on disk is not read either: Diffill works only on what the editor sent
    with pytest.raises(Exception, match="is not open"):
        await inline(client, Path(__file__).as_uri(), 0, 0)
    assert not await code_actions(client, f"{DIR}/nope.txt", (0, 0))
    await alive(client)


@aio
async def test_positions_past_the_end_of_a_line_or_the_document(client):
    uri = f"{DIR}/pos.txt"
    open_doc(client, "ab\ncd", uri)
    with pytest.raises(Exception, match="past the end"):
        await inline(client, uri, 2, 1)  # "ab\ncd" has 2 lines (2:0, the end of the document, is accepted)
    with pytest.raises(Exception, match="past the end"):
        await inline(client, uri, 3, 0)
    with pytest.raises(Exception, match="past the end"):
        await inline(client, uri, 10**6, 10**6)
    result = await inline(client, uri, 0, 10**6)  # a column past the line end is clamped
    assert all(i.range.start == types.Position(0, 10**6) for i in result.items)
    await alive(client)


@aio
async def test_empty_document(client):
    uri = f"{DIR}/empty.txt"
    open_doc(client, "", uri)
    assert isinstance(await inline(client, uri, 0, 0, invoked=True), types.InlineCompletionList)
    assert isinstance(await inline(client, uri, 0, 5), types.InlineCompletionList)  # clamped to 0:0
    actions = {a.title: a for a in await code_actions(client, uri, (0, 0))}
    assert "Diffill: fill gaps" not in actions  # no marker
    cont = await resolved(client, actions["Diffill: continue writing"])
    (edit,) = edits_of(cont.edit)
    assert edit.range == types.Range(types.Position(0, 0), types.Position(0, 0))
    await alive(client)


@aio
@pytest.mark.parametrize("text", ["[MASK] starts it", "ends it [MASK]", "[MASK]", "___\n", "a [MASK]\r\nb ___\rc ___",
                                  "form\x0cfeed and\u2028line sep [MASK] 😀 ___ e\u0301\u2029[MASK]"])
async def test_gap_markers_anywhere_are_replaced_exactly(client, text):
    uri = f"{DIR}/gaps-{abs(hash(text))}.txt"
    open_doc(client, text, uri)
    edits, after = await fill_all_gaps(client, uri, text)
    assert len(edits) == len(re.findall(r"\[MASK\]|_{3,}", text))
    assert gaps_only_changed(text, after)


@aio
async def test_edits_stay_exact_after_incremental_changes_around_odd_line_breaks(client):
    uri = f"{DIR}/incr.txt"
    text = "one\x0ctwo\u2028three\nfour [MASK] five\n"
    open_doc(client, text, uri, version=1)
    enc = encoding_of(client)
    # the client inserts "XY" after "three" (line 0 for the LSP: \x0c and U+2028 do not end lines)
    at = text.index("three") + 5
    pos = types.Position(*client_position(text, at, enc))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(pos, pos), text="XY")]))
    text = text[:at] + "XY" + text[at:]
    edits, after = await fill_all_gaps(client, uri, text)
    (edit,) = edits
    start = text.index("[MASK]")
    assert (edit.range.start.line, edit.range.start.character) == client_position(text, start, enc)
    assert gaps_only_changed(text, after)


@aio
async def test_binary_and_invalid_unicode_documents_get_no_fill(client):
    for name, text in [("late-nul", "word " * 30_000 + "\x00 [MASK]"), ("surrogate", "bad \ud800 [MASK] x")]:
        uri = f"{DIR}/{name}.txt"
        open_doc(client, text, uri)
        assert not (await inline(client, uri, 0, 2, invoked=True)).items
        assert not await code_actions(client, uri, (0, 0))
    await alive(client)


@aio
async def test_a_one_megabyte_line(client):
    uri = f"{DIR}/long-line.txt"
    text = "x" * 500_000 + " [MASK] " + "y" * 500_000
    open_doc(client, text, uri)
    result = await inline(client, uri, 0, 250_000, invoked=True)
    assert all(i.range.start == types.Position(0, 250_000) for i in result.items)
    edits, after = await fill_all_gaps(client, uri, text)
    assert [(e.range.start.line, e.range.start.character, e.range.end.character) for e in edits] == \
        [(0, 500_001, 500_007)]
    assert gaps_only_changed(text, after)


@aio
async def test_a_ten_megabyte_document(client):
    uri = f"{DIR}/huge.txt"
    line = "The quick brown fox jumps over the lazy dog; " * 2 + "\n"
    lines = 10_000_000 // len(line) + 1
    text = line * (lines // 2) + "middle [MASK] here\n" + line * (lines // 2)
    assert len(text) > 10_000_000
    open_doc(client, text, uri)
    # over maxDocumentChars (5 000 000 by default): no fill, no error, the server answers
    assert not (await inline(client, uri, lines // 2, 7, invoked=True)).items
    assert not await code_actions(client, uri, (lines // 2, 0))
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"maxTokens": 4, "candidates": 1, "maxDocumentChars": 20_000_000}}))
    try:
        result = await inline(client, uri, lines // 2, 7, invoked=True)
        assert all(i.range.start == types.Position(lines // 2, 7) for i in result.items)
        actions = await code_actions(client, uri, (lines // 2, 0), (lines // 2, 18))
        fill = await resolved(client, next(a for a in actions if a.title == "Diffill: fill gaps"))
        (edit,) = edits_of(fill.edit)
        assert edit.range == types.Range(types.Position(lines // 2, 7), types.Position(lines // 2, 13))
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"diffill": {"maxTokens": 4, "candidates": 1}}))
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    await alive(client)


@aio
async def test_settings_of_the_wrong_types_are_reported_and_replaced(client):
    client.messages.clear()
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"diffill": {
        "maxTokens": "many", "candidates": 2.5, "threshold": 7, "enabledLanguages": 5, "disabledLanguages": [1],
        "model": 42, "gapMarker": "(", "trigger": True, "contextChars": None, "steps": [1], "noSuchSetting": 1}}))
    for _ in range(200):
        if len(client.messages) >= 11:
            break
        await asyncio.sleep(0.05)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"steps": 10**400}}))  # JSON allows it; Python's float() does not
    for _ in range(200):
        if len(client.messages) >= 12:
            break
        await asyncio.sleep(0.05)
    shown = " | ".join(m.message for m in client.messages)
    assert "could not be read" in shown or "steps must be" in shown  # reported, and the server goes on
    for expected in ["maxTokens must be a number", "candidates must be a whole number", "threshold must be between",
                     "enabledLanguages must be a list", "disabledLanguages must be a list", "model must be a string",
                     "gapMarker is not a valid regular expression", "trigger must be a string",
                     "contextChars must be a number", "steps must be a number", "unknown setting 'noSuchSetting'"]:
        assert expected in shown
    from server.config import Settings
    s, d = (await status(client))["settings"], Settings()
    assert (s["maxTokens"], s["candidates"], s["threshold"], s["model"]) == (d.maxTokens, d.candidates, d.threshold, "")
    uri = f"{DIR}/after-settings.txt"
    open_doc(client, "The quick brown fox  over the lazy dog.", uri)
    assert isinstance(await inline(client, uri, 0, 20, invoked=True), types.InlineCompletionList)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"maxTokens": 4, "candidates": 1}}))


# -- raw protocol: before initialize, malformed messages ---------------------------------------------------------
def test_requests_before_initialize_and_malformed_messages_are_answered(tmp_path):
    c = RawClient(["--model", MODEL], env={"DIFFILL_LOG_DIR": str(tmp_path)})
    try:
        params = {"textDocument": {"uri": "file:///x.txt"}, "position": {"line": 0, "character": 0},
                  "context": {"triggerKind": 1}}
        early = c.response(c.request("textDocument/inlineCompletion", params))
        assert early["error"]["code"] == -32002 and "not initialized" in early["error"]["message"]
        c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///x.txt", "languageId": "plaintext",
                                                           "version": 1, "text": "dropped"}})
        c.send_raw(b"Content-Length: 9\r\n\r\n{not json")          # not JSON
        c.send_raw(b"Content-Length: 4\r\n\r\n\xff\xfe\x00\x01")   # not UTF-8
        c.initialize()
        # the didOpen sent before initialize was dropped, as the LSP says
        gone = c.response(c.request("textDocument/inlineCompletion", params))
        assert "is not open" in gone["error"]["message"]
        bad = dict(params, position={"line": "zero", "character": -1})
        err = c.response(c.request("textDocument/inlineCompletion", bad))["error"]
        assert err["code"] == -32602 and "position.line" in err["message"]
        err = c.response(c.request("textDocument/codeAction", {"textDocument": 7}))["error"]
        assert err["code"] == -32602
        assert c.response(c.request("no/suchMethod", {}))["error"]["code"] == -32601
        c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///x.txt", "languageId": "plaintext",
                                                           "version": 1, "text": "Hello [MASK] world"}})
        ok = c.response(c.request("textDocument/inlineCompletion", params))
        assert "items" in ok["result"]
    finally:
        c.close()


def test_inline_completion_from_vscode_languageclient_9_0_1_is_answered(tmp_path):
    """vscode-languageclient 9.0.1 sends selectedCompletionInfo.range as [start, end] whenever VS Code's suggest
    widget is open; the request is answered (the range read as a Range), and so is one whose field is beyond
    repair. The server says so once in its log."""
    c = RawClient(["--model", MODEL], env={"DIFFILL_LOG_DIR": str(tmp_path)})
    try:
        c.initialize()
        c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///v.txt", "languageId": "plaintext",
                                                           "version": 1, "text": "The quick brown fo"}})
        at = {"line": 0, "character": 18}
        for selected in ({"range": [{"line": 0, "character": 16}, at], "text": "fox"},
                         {"range": "16-18", "text": "fox"}):
            params = {"textDocument": {"uri": "file:///v.txt"}, "position": at,
                      "context": {"triggerKind": 2, "selectedCompletionInfo": selected}}
            answer = c.response(c.request("textDocument/inlineCompletion", params))
            assert "error" not in answer and "items" in answer["result"], answer
    finally:
        c.close()
    log = (tmp_path / "server.log").read_text(encoding="utf-8")
    assert log.count("selectedCompletionInfo") == 1 and "read as a Range" in log


# -- diffill fill: bad input, exact output, --in-place -----------------------------------------------------------
def run_cli(args, stdin: bytes | None = None, monkeypatch=None):
    from diffusion_core.cli import main
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return main(args)


def test_fill_rejects_invalid_utf8_clearly(tmp_path, capsys, monkeypatch):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9 [MASK]".encode("latin-1"))
    assert run_cli(["fill", str(f), "--model", str(MODEL)]) == 2
    err = capsys.readouterr().err
    assert "is not valid UTF-8" in err and "0xe9 at offset 3" in err and "Traceback" not in err
    assert run_cli(["fill", "-", "--model", str(MODEL)], stdin=b"\xff\xfe[MASK]", monkeypatch=monkeypatch) == 2
    assert "standard input is not valid UTF-8" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "fill", "-", "--model", str(MODEL)],
                       input=b"\xc3\x28 [MASK]", capture_output=True, timeout=120)
    assert r.returncode == 2 and b"not valid UTF-8" in r.stderr and b"Traceback" not in r.stderr


def test_fill_bad_files_and_empty_input(tmp_path, capsys, monkeypatch):
    assert run_cli(["fill", str(tmp_path), "--model", str(MODEL)]) == 2  # a directory
    assert "cannot read" in capsys.readouterr().err
    assert run_cli(["fill", str(tmp_path / "missing.txt"), "--model", str(MODEL)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert run_cli(["fill", "-", "--model", str(MODEL)], stdin=b"", monkeypatch=monkeypatch) == 2
    assert "no gap marker" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["[MASK] at the start", "at the end [MASK]", "[MASK]", "crlf\r\nkept [MASK]\r\nx\r\n",
                                  "nul\x00 and \u2028 [MASK] 😀", "___"])
def test_fill_changes_only_the_gaps(tmp_path, capsys, text):
    f = tmp_path / "t.txt"
    f.write_bytes(text.encode("utf-8"))
    assert run_cli(["fill", str(f), "--model", str(MODEL), "--length", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["candidates"][0]
    assert gaps_only_changed(text, out["text"])
    assert out["text"] == re.sub(r"\[MASK\]|_{3,}", lambda m, it=iter(out["fills"]): next(it), text)


def test_fill_in_place_writes_atomically_and_keeps_mode_and_line_ends(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    text = "first\r\nThe quick [MASK] fox\r\nlast ___ line\r\n"
    f.write_bytes(text.encode("utf-8"))
    f.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(f)
    assert run_cli(["fill", str(link), "--in-place", "--model", str(MODEL), "--length", "2"]) == 0
    assert "filled 2 gap(s)" in capsys.readouterr().err
    after = f.read_bytes().decode("utf-8")
    assert gaps_only_changed(text, after) and "\r\n" in after and "[MASK]" not in after
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert link.is_symlink()  # the link still points at the file, which was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "notes.txt"]  # no temporary file left


@pytest.mark.parametrize("fault", ["no-model", "replace-fails", "fsync-fails", "stdin", "no-marker"])
def test_fill_in_place_never_truncates_on_error(tmp_path, capsys, monkeypatch, fault):
    f = tmp_path / "keep.txt"
    original = "precious [MASK] text\n".encode("utf-8") if fault != "no-marker" else b"precious text\n"
    f.write_bytes(original)
    model = str(MODEL)
    if fault == "no-model":
        model = str(tmp_path / "no-such-model")
    elif fault == "replace-fails":
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    elif fault == "fsync-fails":
        monkeypatch.setattr(os, "fsync", lambda *a: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    args = ["fill", "-" if fault == "stdin" else str(f), "--in-place", "--model", model, "--length", "1"]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffill") and "Traceback" not in err
    assert f.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- security -----------------------------------------------------------------------------------------------------
def test_no_code_path_unpickles_or_trusts_remote_code():
    bad = re.compile(r"torch\.load\(|pickle\.loads?\(|trust_remote_code\s*=\s*True|use_safetensors\s*=\s*False|"
                     r"weights_only\s*=\s*False|from_tf\s*=\s*True|from_flax\s*=\s*True")
    hits = [f"{p.relative_to(ROOT)}:{i}" for d in ("diffusion_core", "server") for p in (ROOT / d).rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if bad.search(line)]
    assert hits == []


class _Boom:
    """Unpickling this writes a marker file: proof that something ran code from a model directory."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran"))


def test_a_malicious_pickle_and_remote_code_in_a_model_dir_never_run(tiny_model_dir, tmp_path):
    from diffusion_core.model.loading import ModelLoadError, load_model
    marker = tmp_path / "ran.txt"
    d = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, d)
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (d / name).write_bytes(pickle.dumps(_Boom(str(marker))))
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('remote code ran')\n")
    for cfg_name, cls in (("config.json", "AutoModelForMaskedLM"), ("tokenizer_config.json", "AutoTokenizer")):
        cfg = json.loads((d / cfg_name).read_text())
        cfg["auto_map"] = {cls: "evil.Evil"}
        (d / cfg_name).write_text(json.dumps(cfg))
    for backend in ("auto", "transformers"):
        try:
            loaded = load_model(d, backend=backend)
        except TypeError:  # a loader without backends
            loaded = load_model(d)
        assert loaded.tokenizer.mask_token_id is not None
    (d / "model.safetensors").unlink()  # only the pickle left: refused, never opened
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(d)
    assert not marker.exists()


def test_model_names_cannot_escape_the_models_dir(tiny_model_dir, tmp_path, monkeypatch):
    from diffusion_core.model.loading import ModelLoadError, resolve_model_dir
    outer = tmp_path / "outer"
    models = outer / "models"
    shutil.copytree(tiny_model_dir, models / "mine")
    for f in tiny_model_dir.iterdir():  # a valid model right above the models dir
        shutil.copy(f, outer / f.name)
    cwd = tmp_path / "cwd" / "sub"  # nothing to find relative to the working directory
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(models))
    assert resolve_model_dir("mine") == models / "mine"
    for name in ("..", "."):
        with pytest.raises(ModelLoadError):  # a model *name* never reaches outside the models dir
            resolve_model_dir(name)


def test_odd_model_names_are_a_model_load_error(tmp_path, monkeypatch):
    from diffusion_core.model.loading import ModelLoadError, resolve_model_dir
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path))
    for name in ("a\x00b", "\ud800", "~nobody-here", "x" * 5000):
        with pytest.raises(ModelLoadError):
            resolve_model_dir(name)


def test_cli_reports_odd_model_names_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path))
    f = tmp_path / "t.txt"
    f.write_text("a [MASK] b")
    for name in ("x" * 5000, "a\x00b", "../../etc"):
        assert run_cli(["fill", str(f), "--model", name]) == 2
        err = capsys.readouterr().err
        assert err.startswith("diffill: ") and "Traceback" not in err


def test_tcp_listens_on_loopback_by_default(tmp_path):
    from server.__main__ import is_loopback, parse_tcp
    assert parse_tcp("2087") == ("127.0.0.1", 2087)
    assert parse_tcp(":2087") == ("127.0.0.1", 2087)
    assert parse_tcp("[::1]:2087") == ("::1", 2087)
    assert parse_tcp("0.0.0.0:9") == ("0.0.0.0", 9)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(Exception, match="HOST:PORT"):
        parse_tcp("localhost:http")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "server", "--tcp", str(port), "--model", str(MODEL)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DIFFILL_LOG_DIR": str(tmp_path)})
    try:
        listening = None
        for _ in range(600):
            listening = _listening_addresses(port)
            if listening:
                break
            time.sleep(0.1)
        assert listening == {"127.0.0.1"}, listening
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.kill()
        proc.wait(10)


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # LISTEN
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    found.add(addr)
    return found
