"""Code actions and commands: fill gaps, fill, rewrite or proofread a selection, bridge paragraphs, continue.

``textDocument/codeAction`` lists the jobs that apply at the range without
running the model (editors ask on every cursor move); the edit is computed
in ``codeAction/resolve``, or eagerly for clients that cannot resolve.
``workspace/executeCommand`` runs the same jobs with ``$/progress`` per
denoising step (cancellable) and applies the result with
``workspace/applyEdit``, unless the document changed meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
import uuid

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..documents import DocumentProblem, check_usable, offset_of, open_document, position_of
from ..jobs import JOBS, TITLES, Replacement, plan_job

log = logging.getLogger("diffill.actions")
COMMAND_OF = {job: f"diffill.{job}" for job in JOBS}
COMMANDS = list(COMMAND_OF.values()) + ["diffill.status"]


class ActionFeature:
    def __init__(self, server):
        self.server = server

    # -- shared -----------------------------------------------------------------------
    def _plan(self, job: str, uri: str, rng: types.Range):
        ls = self.server
        doc = open_document(ls, uri)
        try:
            check_usable(doc, ls.settings.maxDocumentChars)
        except DocumentProblem as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc
        start, end = offset_of(doc, rng.start), offset_of(doc, rng.end)
        if end < start:
            start, end = end, start
        return doc, plan_job(job, doc.source, start, end, ls.settings)

    async def _run(self, uri: str, plan, progress=None, cancel_future=None) -> list[Replacement]:
        job = self.server.worker.submit(plan.run, key=(uri, "action"), progress=progress)
        if cancel_future is not None:
            cancel_future.add_done_callback(lambda f: job.cancel.set() if f.cancelled() else None)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel.set()
            raise

    def _edit(self, doc, replacements: list[Replacement]) -> types.WorkspaceEdit:
        edits = [types.TextEdit(types.Range(position_of(doc, r.start), position_of(doc, r.end)), r.text)
                 for r in replacements]
        caps = self.server.client_capabilities
        versioned = bool(caps.workspace and caps.workspace.workspace_edit
                         and caps.workspace.workspace_edit.document_changes)
        if versioned:
            ident = types.OptionalVersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version)
            return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=ident, edits=edits)])
        return types.WorkspaceEdit(changes={doc.uri: edits})

    # -- textDocument/codeAction ----------------------------------------------------------
    def _can_resolve(self) -> bool:
        td = self.server.client_capabilities.text_document
        ca = td.code_action if td else None
        return bool(ca and ca.resolve_support and "edit" in ca.resolve_support.properties)

    async def list(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        actions = []
        for job in JOBS:
            try:
                doc, plan = self._plan(job, uri, params.range)
            except JsonRpcInvalidParams as exc:
                log.info("%s", exc)
                return []
            if plan is None:
                continue
            data = {"uri": uri, "job": job, "version": doc.version,
                    "range": {"start": {"line": params.range.start.line, "character": params.range.start.character},
                              "end": {"line": params.range.end.line, "character": params.range.end.character}}}
            action = types.CodeAction(title=TITLES[job], kind=types.CodeActionKind.RefactorRewrite, data=data)
            if not self._can_resolve():
                action = await self.resolve(action)
            actions.append(action)
        return actions

    async def resolve(self, action: types.CodeAction) -> types.CodeAction:
        data = action.data or {}
        try:
            rng = types.Range(types.Position(**data["range"]["start"]), types.Position(**data["range"]["end"]))
            doc, plan = self._plan(data["job"], data["uri"], rng)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JsonRpcInvalidParams(f"code action data is malformed: {exc!r}") from exc
        if plan is None:
            action.disabled = types.CodeActionDisabled(reason="does not apply here any more")
            return action
        version = doc.version
        try:
            replacements = await self._run(data["uri"], plan)
        except Exception as exc:  # no model, superseded: the action stays without an edit
            action.disabled = types.CodeActionDisabled(reason=str(exc) or type(exc).__name__)
            return action
        if doc.version != version:
            action.disabled = types.CodeActionDisabled(reason="the document changed while Diffill was writing")
            return action
        if not replacements:
            action.disabled = types.CodeActionDisabled(reason="nothing to change")
            return action
        action.edit = self._edit(doc, replacements)
        return action

    # -- workspace/executeCommand -----------------------------------------------------------
    async def command(self, name: str, args: list) -> dict | None:
        ls = self.server
        if name == "diffill.status":
            return ls.status.snapshot()
        job = name.split(".", 1)[1]
        try:
            target = args[0]
            uri = target["uri"] if isinstance(target, dict) else target.uri
            raw = target.get("range") or {"start": target["position"], "end": target["position"]}
            rng = types.Range(types.Position(**raw["start"]), types.Position(**raw["end"]))
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JsonRpcInvalidParams(
                f"{name} takes one argument {{uri, range}} or {{uri, position}}: {exc!r}") from exc
        doc, plan = self._plan(job, uri, rng)
        if plan is None:
            ls.show(f"{TITLES[job]} does not apply at this position", types.MessageType.Info)
            return {"applied": False, "reason": "not applicable"}
        version = doc.version
        token, cancel_future = await self._progress_begin(TITLES[job])
        try:
            progress = None
            if token is not None:
                def progress(step, total, token=token):
                    ls.call_soon(ls.work_done_progress.report, token, types.WorkDoneProgressReport(
                        message=f"step {step}/{total}", percentage=min(100, int(100 * step / max(1, total))),
                        cancellable=True))
            replacements = await self._run(uri, plan, progress, cancel_future)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = "cancelled" if type(exc).__name__ in ("Cancelled", "Superseded") else str(exc)
            if reason != "cancelled":
                ls.show(f"{TITLES[job]} failed: {reason}", types.MessageType.Error)
            return {"applied": False, "reason": reason}
        finally:
            if token is not None:
                ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
                ls.work_done_progress.tokens.pop(token, None)  # pygls keeps every token otherwise
        if doc.version != version:
            ls.show("the document changed while Diffill was writing; nothing was applied")
            return {"applied": False, "reason": "document changed"}
        if not replacements:  # proofreading found every word fine
            ls.show(f"{TITLES[job]}: nothing to change", types.MessageType.Info)
            return {"applied": False, "reason": "nothing to change", "texts": []}
        result = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=self._edit(doc, replacements), label=TITLES[job]))
        return {"applied": bool(result and result.applied), "texts": [r.text for r in replacements]}

    async def _progress_begin(self, title: str):
        ls = self.server
        caps = ls.client_capabilities
        if not (caps.window and caps.window.work_done_progress):
            return None, None
        token = f"diffill-{uuid.uuid4()}"
        try:
            await ls.work_done_progress.create_async(token)
        except Exception as exc:
            log.info("client refused a progress token: %s", exc)
            return None, None
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=True, percentage=0))
        return token, ls.work_done_progress.tokens.get(token)
