"""Fills at the cursor: ``textDocument/inlineCompletion`` (ghost text) and ``textDocument/completion``
(items with a ``textEdit``, for clients without inline completion).

A suggestion stays valid while the user types into it: if the new text
before the cursor is the old one plus a prefix of the suggestion, the rest of
the suggestion is returned at once, without touching the model.

While the editor's suggest widget is open, an inline request names the selected
item (``selectedCompletionInfo``: a range, usually the word typed so far, and its
text).  The editor shows ghost text then only if it extends that item over the
same range, so the fill is made as if the item were already accepted and is
returned as the item's text plus the fill, over the item's range.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from lsprotocol import types

from ..documents import DocumentProblem, check_usable, offset_of, open_document
from ..jobs import cursor_fills

log = logging.getLogger("diffill.completions")
TAIL = 256  # characters before the cursor that identify a cached suggestion
MAX_CACHED = 64  # documents with a remembered suggestion (closing a document forgets its own)


@dataclass
class Cached:
    offset: int
    tail: str          # source[offset-TAIL:offset] when the suggestions were made
    suffix: str        # source[offset:offset+TAIL]
    texts: list[str]


class CompletionFeature:
    def __init__(self, server):
        self.server = server
        self.cache: dict[str, Cached] = {}
        self.stats = {"requests": 0, "reused": 0}  # reused: answered from a suggestion typed into

    def forget(self, uri: str) -> None:
        self.cache.pop(uri, None)

    def _remember(self, uri: str, cached: Cached) -> None:
        self.cache.pop(uri, None)
        self.cache[uri] = cached
        while len(self.cache) > MAX_CACHED:
            self.cache.pop(next(iter(self.cache)))

    def _typed_through(self, uri: str, source: str, offset: int) -> list[str] | None:
        c = self.cache.get(uri)
        if c is None or offset < c.offset or source[offset:offset + TAIL] != c.suffix:
            return None
        if source[max(0, c.offset - TAIL):c.offset] != c.tail:
            return None
        typed = source[c.offset:offset]
        rest = [t[len(typed):] for t in c.texts if t.startswith(typed) and len(t) > len(typed)]
        return rest or None

    async def fills(self, uri: str, position: types.Position, invoked: bool, kind: str,
                    selected: types.SelectedCompletionInfo | None = None) -> tuple[list[str], int]:
        ls = self.server
        s = ls.settings
        if s.trigger == "manual" and not invoked:
            return [], 0
        doc = open_document(ls, uri)
        if not s.language_enabled(doc.language_id):
            return [], 0
        try:
            check_usable(doc, s.maxDocumentChars)
        except DocumentProblem as exc:
            log.warning("%s", exc)
            return [], 0
        offset = offset_of(doc, position)
        source = doc.source
        if selected is not None:  # fill as if the selected item were accepted
            start, end = offset_of(doc, selected.range.start), offset_of(doc, selected.range.end)
            source = source[:start] + selected.text + source[end:]
            offset = start + len(selected.text)
        self.stats["requests"] += 1
        hit = self._typed_through(uri, source, offset)
        if hit is not None:
            self.stats["reused"] += 1
            return hit, offset
        job = ls.worker.submit(cursor_fills(source, offset, s, s.candidates).run, key=(uri, kind))
        try:
            texts = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel.set()  # the worker stops at its next step
            raise
        except Exception as exc:  # superseded, no model, or a model error: no suggestion, no failure
            # (a failed fill is reported by the worker with an error status and window/showMessage)
            log.info("no completion for %s: %s", uri, exc or type(exc).__name__)
            return [], offset
        self._remember(uri, Cached(offset, source[max(0, offset - TAIL):offset], source[offset:offset + TAIL], texts))
        return texts, offset

    async def inline(self, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        selected = params.context.selected_completion_info
        if selected is not None and not _before_or_at(selected.range.start, selected.range.end):
            selected = None  # a backwards range: the item cannot be extended, fill at the cursor
        texts, _ = await self.fills(params.text_document.uri, params.position, invoked, "inline", selected)
        if selected is None:
            here = types.Range(params.position, params.position)
            return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=t, range=here)
                                                     for t in texts])
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=selected.text + t,
                                                                            range=selected.range) for t in texts])

    async def items(self, params: types.CompletionParams) -> types.CompletionList:
        invoked = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        texts, _ = await self.fills(params.text_document.uri, params.position, invoked, "completion")
        here = types.Range(params.position, params.position)
        items = []
        for rank, text in enumerate(texts):
            first = text.strip().split("\n", 1)[0]
            items.append(types.CompletionItem(
                label=first[:60] or text[:60], kind=types.CompletionItemKind.Text, detail="Diffill",
                sort_text=f"{rank:03d}", filter_text=text, text_edit=types.TextEdit(here, text),
                insert_text_format=types.InsertTextFormat.PlainText,
                documentation=text if "\n" in text else None))
        return types.CompletionList(is_incomplete=True, items=items)


def _before_or_at(a: types.Position, b: types.Position) -> bool:
    return (a.line, a.character) <= (b.line, b.character)
