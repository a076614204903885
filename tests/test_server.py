"""The language server end to end: a real process over stdio, driven by pytest-lsp with the
capabilities VS Code and Neovim send."""
from __future__ import annotations

import asyncio
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import session_model
from lsp_helpers import make_client

MODEL = session_model("tiny")
SLOW_MODEL = session_model("slow", hidden=256, layers=6)
CLIENTS = ["visual-studio-code", "neovim"]
URI = "file:///tmp/diffill-test/doc.py"
# One server per fixture per module (starting torch is the slow part); tests share its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def server_config(model):
    return ClientServerConfig(server_command=[sys.executable, "-m", "server", "--model", str(model)],
                              client_factory=make_client)


async def start(client: LanguageClient, spec: str, options=None):
    client.init_result = await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(spec), initialization_options=options,
        workspace_folders=[types.WorkspaceFolder(uri="file:///tmp/diffill-test", name="t")]))


def status_of(s):
    return s["state"] if isinstance(s, dict) else s.state


async def wait_ready(client, timeout=60):
    for _ in range(int(timeout * 20)):
        if client.statuses and status_of(client.statuses[-1]) in ("ready", "error"):
            return status_of(client.statuses[-1])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no ready status; got {client.statuses}")


def open_doc(client, text, uri=URI, language="python", version=1):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def inline(client, line, character, uri=URI, kind=types.InlineCompletionTriggerKind.Automatic):
    return client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, character),
        context=types.InlineCompletionContext(trigger_kind=kind)))


@pytest_lsp.fixture(config=server_config(MODEL), params=CLIENTS, scope="module")
async def client(lsp_client: LanguageClient, request):
    await start(lsp_client, request.param, {"diffill": {"maxTokens": 6, "candidates": 2}})
    yield
    await lsp_client.shutdown_session()


async def test_request_before_ready_is_answered_then_status_ready(client: LanguageClient):
    open_doc(client, "def add(a, b):\n    return \n")
    result = await inline(client, 1, 11)  # sent at once, while the model may still be loading
    assert isinstance(result, types.InlineCompletionList) and result.items  # queued behind the load
    assert await wait_ready(client) == "ready"
    assert status_of(client.statuses[0]) in ("loading", "ready")


async def test_inline_completion_returns_ranked_items_at_the_cursor(client: LanguageClient):
    open_doc(client, "def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    await wait_ready(client)
    result = await inline(client, 1, 11)
    assert 1 <= len(result.items) <= 2
    for item in result.items:
        assert item.range == types.Range(types.Position(1, 11), types.Position(1, 11))
        assert item.insert_text.strip()


async def test_inline_completion_with_the_suggest_widget_open_extends_the_selected_item(client: LanguageClient):
    """VS Code shows ghost text beside its suggest widget only if the item extends the selected suggestion over
    the same range: the fill is made after the suggestion and returned with it."""
    uri = "file:///tmp/diffill-test/widget.txt"
    open_doc(client, "The quick brown fo over the lazy dog.\n", uri=uri, language="plaintext")
    await wait_ready(client)
    word = types.Range(types.Position(0, 16), types.Position(0, 18))
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(0, 18),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked,
                                              selected_completion_info=types.SelectedCompletionInfo(word, "fox"))))
    assert result.items
    for item in result.items:
        assert item.range == word and item.insert_text.startswith("fox") and item.insert_text[3:].strip()
        assert "\n" not in item.insert_text  # the gap is inside a line: its fill stays on it


async def test_mid_line_fills_are_single_line(client: LanguageClient):
    open_doc(client, "x = compute() + other\n")
    await wait_ready(client)
    result = await inline(client, 0, 4)
    assert result.items  # an empty answer would pass the line check below
    assert all("\n" not in item.insert_text and item.insert_text.strip() for item in result.items)


async def test_completion_items_carry_text_edits(client: LanguageClient):
    open_doc(client, "The quick brown fox  over the lazy dog.\n", uri="file:///tmp/diffill-test/a.txt",
             language="plaintext")
    await wait_ready(client)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier("file:///tmp/diffill-test/a.txt"),
        position=types.Position(0, 20)))
    assert result.items
    for item in result.items:
        assert item.text_edit.range.start == types.Position(0, 20)


async def test_utf16_positions_with_emoji(client: LanguageClient):
    # Columns count code units of the negotiated encoding: "🎉" is 2 in UTF-16, 4 in UTF-8, 1 in UTF-32.
    encoding = client.init_result.capabilities.position_encoding or "utf-16"
    width = {"utf-8": 4, "utf-16": 2, "utf-32": 1}[str(getattr(encoding, "value", encoding))]
    open_doc(client, "x = '😀😀' + \ny = 1\n")
    await wait_ready(client)
    cursor = 5 + 2 * width + 4
    result = await inline(client, 0, cursor)
    assert all(item.range.start == types.Position(0, cursor) for item in result.items)
    # A fill-gaps action on an emoji line must replace exactly the marker.
    open_doc(client, "a = '🎉' + [MASK] + 'ok'\n", uri="file:///tmp/diffill-test/e.py")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier("file:///tmp/diffill-test/e.py"),
        range=types.Range(types.Position(0, 0), types.Position(0, 0)),
        context=types.CodeActionContext(diagnostics=[])))
    fill = next(a for a in actions if "fill gaps" in a.title)
    if fill.edit is None:
        fill = await client.code_action_resolve_async(fill)
    edits = edits_of(fill.edit)
    start = 5 + width + 4
    assert [(e.range.start.character, e.range.end.character) for e in edits] == [(start, start + 6)]


def edits_of(edit: types.WorkspaceEdit):
    if edit.document_changes:
        return [e for change in edit.document_changes for e in change.edits]
    return [e for edits in edit.changes.values() for e in edits]


async def test_code_actions_offer_the_jobs_that_apply(client: LanguageClient):
    text = "First paragraph about cats.\n\nSecond paragraph about dogs.\n"
    open_doc(client, text)
    await wait_ready(client)

    async def titles(rng):
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(URI), range=rng,
            context=types.CodeActionContext(diagnostics=[])))
        return {a.title: a for a in actions}
    on_blank = await titles(types.Range(types.Position(1, 0), types.Position(1, 0)))
    assert "Diffill: bridge paragraphs" in on_blank
    selection = await titles(types.Range(types.Position(0, 6), types.Position(0, 15)))
    assert {"Diffill: fill selection", "Diffill: rewrite selection"} <= set(selection)
    at_end = await titles(types.Range(types.Position(3, 0), types.Position(3, 0)))
    assert "Diffill: continue writing" in at_end
    assert "Diffill: proofread selection" in selection
    for action in [a for t, a in selection.items() if "proofread" not in t] + [on_blank["Diffill: bridge paragraphs"]]:
        resolved = action if action.edit else await client.code_action_resolve_async(action)
        assert resolved.edit is not None, resolved.disabled
        assert len(edits_of(resolved.edit)) == 1


async def test_fill_gaps_fills_every_marker_jointly(client: LanguageClient):
    open_doc(client, "alpha [MASK] beta\ngamma ___ delta\n")
    await wait_ready(client)
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI),
        range=types.Range(types.Position(0, 0), types.Position(0, 0)),
        context=types.CodeActionContext(diagnostics=[])))
    fill = next(a for a in actions if a.title == "Diffill: fill gaps")
    fill = fill if fill.edit else await client.code_action_resolve_async(fill)
    ranges = [(e.range.start.line, e.range.start.character, e.range.end.character) for e in edits_of(fill.edit)]
    assert ranges == [(0, 6, 12), (1, 6, 9)]


async def test_command_reports_progress_and_applies_the_edit(client: LanguageClient):
    open_doc(client, "alpha [MASK] beta\n")
    await wait_ready(client)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.fillGaps", arguments=[{"uri": URI, "position": {"line": 0, "character": 0}}]))
    assert result["applied"] is True
    assert len(client.applied) == 1
    if client.capabilities.window and client.capabilities.window.work_done_progress:
        (reports,) = client.progress_reports.values()
        kinds = [type(r).__name__ for r in reports]
        assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
        assert "WorkDoneProgressReport" in kinds


async def test_proofread_changes_only_whole_words_of_the_selection(client: LanguageClient):
    import re
    text = "Teh cat sat on teh mat, and  the dog barked.\nUntouched line.\n"
    open_doc(client, text)
    await wait_ready(client)
    before = len(client.applied)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.proofreadSelection",
        arguments=[{"uri": URI, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 44}}}]))
    if not result["applied"]:
        assert result["reason"] == "nothing to change" and len(client.applied) == before
        return
    edits = edits_of(client.applied[-1].edit)
    assert edits and len(edits) == len(result["texts"])
    words = {(m.start(), m.end()) for m in re.finditer(r"\w+", text.split("\n")[0])}
    line = text.split("\n")[0]
    for e in edits:
        assert e.range.start.line == e.range.end.line == 0
        assert (e.range.start.character, e.range.end.character) in words  # a whole word, nothing around it
        assert e.new_text and not any(c.isspace() for c in e.new_text)
    spliced, at = [], 0
    for e in sorted(edits, key=lambda e: e.range.start.character):
        spliced += [line[at:e.range.start.character], e.new_text]
        at = e.range.end.character
    rest = re.sub(r"\w+", "W", "".join(spliced + [line[at:]]))
    assert rest == re.sub(r"\w+", "W", line)  # punctuation and the doubled space: byte for byte


async def test_status_command_and_bad_arguments(client: LanguageClient):
    await wait_ready(client)
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))
    assert status["state"] == "ready" and status["settings"]["maxTokens"] == 6
    with pytest.raises(Exception, match="takes one argument"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="diffill.rewriteSelection", arguments=[]))


async def test_out_of_range_position_is_a_clear_error_and_the_server_lives(client: LanguageClient):
    open_doc(client, "one line\n")
    await wait_ready(client)
    with pytest.raises(Exception, match="past the end"):
        await inline(client, 50, 0)
    clamped = await inline(client, 0, 999, kind=types.InlineCompletionTriggerKind.Invoked)  # at the line's end
    assert clamped.items and clamped.items[0].insert_text.strip()  # (the LSP clamps the echoed position too)


async def test_binary_and_huge_documents_get_no_fill_and_no_crash(client: LanguageClient):
    open_doc(client, "abc\x00\x01def", uri="file:///tmp/diffill-test/bin.dat", language="plaintext")
    await wait_ready(client)
    result = await inline(client, 0, 3, uri="file:///tmp/diffill-test/bin.dat")
    assert not result.items
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"maxTokens": 6, "maxDocumentChars": 100}}))
    open_doc(client, "x = 1\n" * 100, uri="file:///tmp/diffill-test/big.py")
    assert not (await inline(client, 1, 0, uri="file:///tmp/diffill-test/big.py")).items
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"maxTokens": 6, "maxDocumentChars": 5_000_000}}))


async def test_request_storm_keeps_the_last_answer(client: LanguageClient):
    open_doc(client, "def add(a, b):\n    return \n")
    await wait_ready(client)
    results = await asyncio.gather(*[inline(client, 1, 11) for _ in range(20)])
    assert all(isinstance(r, types.InlineCompletionList) for r in results)
    assert results[-1].items and results[-1].items[0].insert_text.strip()  # the newest gets a real fill


@pytest_lsp.fixture(config=server_config(MODEL), scope="module")
async def configured(lsp_client: LanguageClient):
    lsp_client.set_configuration({"maxTokens": 5, "trigger": "manual"}, section="diffill")
    await start(lsp_client, "visual-studio-code", {"steps": "many", "precision": "fp8", "candidates": 2})
    yield
    await lsp_client.shutdown_session()


async def test_bad_options_are_reported_and_replaced_by_defaults(configured: LanguageClient):
    assert await wait_ready(configured) == "ready"
    shown = " | ".join(m.message for m in configured.messages)
    assert "steps must be a number" in shown and "precision must be one of" in shown
    status = await configured.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))
    assert status["settings"]["precision"] == "auto" and status["settings"]["steps"] == 0
    assert status["settings"]["maxTokens"] == 5  # from workspace/configuration
    assert status["settings"]["trigger"] == "manual"


async def test_manual_trigger_and_configuration_change(configured: LanguageClient):
    await wait_ready(configured)
    open_doc(configured, "def add(a, b):\n    return \n")

    def jobs_run():
        return sum(status_of(x) == "busy" for x in configured.statuses)
    before = jobs_run()
    assert not (await inline(configured, 1, 11)).items  # automatic trigger ignored in manual mode
    await asyncio.sleep(0.2)
    assert jobs_run() == before  # ... without running the model
    invoked = await inline(configured, 1, 11, kind=types.InlineCompletionTriggerKind.Invoked)
    assert invoked.items and invoked.items[0].insert_text.strip()
    for _ in range(100):
        if jobs_run() > before:
            break
        await asyncio.sleep(0.02)
    assert jobs_run() > before  # an explicit request does run the model
    configured.set_configuration({"trigger": "automatic", "disabledLanguages": ["python"]}, section="diffill")
    configured.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await asyncio.sleep(0.5)
    assert not (await inline(configured, 1, 11)).items  # python is now disabled


@pytest_lsp.fixture(config=server_config(SLOW_MODEL), scope="module")
async def slow(lsp_client: LanguageClient):
    # Jobs long enough to cancel in the middle: a rewrite one slot a pass (steps, threshold), and a fill at the
    # cursor that wants ten candidates, so grow writes on until ten lengths are claimed (up to 128 tokens) instead
    # of stopping after the two or three passes a single best fill takes (which a cancel may arrive after)
    await start(lsp_client, "visual-studio-code",
                {"maxTokens": 128, "contextChars": 400, "candidates": 10, "steps": 256, "threshold": 0})
    yield
    await lsp_client.shutdown_session()


LONG_TEXT = "First paragraph about cats. " * 12 + "\n\n\n" + "Second paragraph about dogs. " * 12


async def start_rewrite(client, msg_id):
    """Start a long rewrite (the first paragraph, one slot a pass: the slow fixture's steps and threshold)
    and wait until it reports its first denoising step."""
    before = set(client.progress_reports)
    whole_line = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": len(LONG_TEXT.split("\n")[0])}}
    pending = asyncio.ensure_future(client.protocol.send_request_async(
        types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
            command="diffill.rewriteSelection", arguments=[{"uri": URI, "range": whole_line}]),
        msg_id=msg_id))
    for _ in range(600):
        new = [t for t in client.progress_reports if t not in before]
        if new and any(isinstance(r, types.WorkDoneProgressReport) for r in client.progress_reports[new[0]]):
            return pending, new[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no progress report")


async def cancelled_step(client, count):
    for _ in range(200):
        lines = [m.message for m in client.log_messages if "cancelled after step" in m.message]
        if len(lines) >= count:
            step, total = (int(x) for x in lines[count - 1].rsplit("step ", 1)[1].split(" of "))
            return step, total
        await asyncio.sleep(0.05)
    raise AssertionError("the job was not cancelled")


async def test_cancel_request_stops_between_steps_and_the_next_works(slow: LanguageClient):
    await wait_ready(slow)
    open_doc(slow, LONG_TEXT)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(URI), position=types.Position(0, 200),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
    busy_before = sum(status_of(x) == "busy" for x in slow.statuses)
    pending = asyncio.ensure_future(
        slow.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="slow-1"))
    for _ in range(600):  # wait until the worker runs the job
        if sum(status_of(x) == "busy" for x in slow.statuses) > busy_before:
            break
        await asyncio.sleep(0.01)
    slow.cancel_request(types.CancelParams(id="slow-1"))
    with pytest.raises(Exception, match="cancel"):
        await pending
    step, total = await cancelled_step(slow, 1)
    assert step < total


async def test_progress_cancel_from_the_client_stops_the_job(slow: LanguageClient):
    await wait_ready(slow)
    open_doc(slow, LONG_TEXT)
    pending, token = await start_rewrite(slow, "slow-2")
    slow.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    result = await pending
    assert result["applied"] is False and result["reason"] == "cancelled"
    step, total = await cancelled_step(slow, 2)
    assert step < total
    assert isinstance(slow.progress_reports[token][-1], types.WorkDoneProgressEnd)


async def test_after_cancellations_the_next_request_works(slow: LanguageClient):
    slow.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"diffill": {"maxTokens": 4}}))
    open_doc(slow, "The quick brown fox jumps over the lazy dog. " * 3)
    result = await inline(slow, 0, 20, kind=types.InlineCompletionTriggerKind.Invoked)
    assert isinstance(result, types.InlineCompletionList) and result.items
