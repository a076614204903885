"""From an open document and client positions to the text around a gap.

Positions arrive in the negotiated encoding (UTF-16 unless the client chose
otherwise); columns are counted in that encoding's code units, so emoji, CJK
and combining characters land where the editor shows them.

Lines end only at ``\\n``, ``\\r\\n`` and ``\\r``, as the LSP says.  pygls' own
``TextDocument.lines`` uses ``str.splitlines``, which also breaks at form feeds,
``\\x0b``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028`` and ``\\u2029``: with such a
character in a document every position after it would be off by a line, and an
incremental ``didChange`` would be applied in the wrong place.  ``LspTextDocument``
(installed for every document by ``LspWorkspace``) fixes that and caches the lines.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument, Workspace

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_SCANNED = object()


class DocumentProblem(Exception):
    """The document cannot be used for completion (binary, too large); the message says why."""


def split_lines(source: str) -> list[str]:
    """Lines with their terminators, split only at ``\\n``, ``\\r\\n`` and ``\\r`` (the LSP's line ends)."""
    if "\r" not in source:
        parts = source.split("\n")
        lines = [p + "\n" for p in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        return lines
    return _LINE.findall(source)


def _content(line: str) -> str:
    """A line without its terminator."""
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


class LspTextDocument(TextDocument):
    """pygls' document with LSP line ends; lines and line-start offsets are computed once per text."""

    _lines_of: str | None = None
    _lines: tuple[str, ...] = ()
    _starts: list[int] = []
    _problem = _NOT_SCANNED

    def _split(self) -> None:
        source = self.source
        if self._lines_of is not source:
            lines = split_lines(source)
            starts, total = [], 0
            for line in lines:
                starts.append(total)
                total += len(line)
            self._lines, self._starts, self._lines_of = tuple(lines), starts, source
            self._problem = _NOT_SCANNED

    @property
    def lines(self):
        self._split()
        return self._lines

    @property
    def line_starts(self) -> list[int]:
        self._split()
        return self._starts


class LspWorkspace(Workspace):
    """A workspace whose documents are ``LspTextDocument``s."""

    def _create_text_document(self, doc_uri, source=None, version=None, language_id=None):
        return LspTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                               sync_kind=self._sync_kind, position_codec=self._position_codec)


def install_workspace(workspace: Workspace) -> None:
    """Make pygls' freshly created workspace an ``LspWorkspace`` (it holds no documents yet)."""
    if not isinstance(workspace, LspWorkspace):
        workspace.__class__ = LspWorkspace


def open_document(ls, uri: str):
    """The open document at ``uri``; an unknown URI is an ``InvalidParams`` error.

    (pygls would otherwise read the file from disk: Diffill only ever works on what the editor sent.)
    """
    from urllib.parse import unquote
    docs = ls.workspace.text_documents
    doc = docs.get(unquote(uri)) if isinstance(uri, str) else None
    if doc is None:
        raise JsonRpcInvalidParams(f"document {uri} is not open (send textDocument/didOpen first)")
    return doc


def _lines_and_starts(doc):
    if isinstance(doc, LspTextDocument):
        return doc.lines, doc.line_starts
    lines = split_lines(doc.source)
    starts, total = [], 0
    for line in lines:
        starts.append(total)
        total += len(line)
    return lines, starts


def offset_of(doc, position: types.Position) -> int:
    """Offset of a client position; a line past the end is an error, a column past the line end is clamped
    (as the LSP spec says).  A column inside a character (half a surrogate pair, a byte of a UTF-8 sequence)
    moves to the end of that character."""
    lines, starts = _lines_and_starts(doc)
    if position.line < 0 or position.character < 0:
        raise JsonRpcInvalidParams(f"negative position {position.line}:{position.character}")
    # An empty document, or one that ends with a line break, has one more (empty) line than ``lines``;
    # ``len(lines):0`` is accepted as the end of any document.
    last_is_empty = not lines or len(_content(lines[-1])) < len(lines[-1])
    if position.line > len(lines) or (position.line == len(lines) and position.character > 0
                                      and not last_is_empty):
        raise JsonRpcInvalidParams(
            f"position {position.line}:{position.character} is past the end of {doc.uri} "
            f"({len(lines) + last_is_empty} lines)")
    if position.line == len(lines):
        return len(doc.source)
    line = _content(lines[position.line])
    impl = doc.position_codec.impl
    want, units, col = position.character, 0, 0
    if impl.num_units(line) <= want:
        col = len(line)
    else:
        for ch in line:
            if units >= want:
                break
            units += impl.code_units_for_char(ch)
            col += 1
    return starts[position.line] + col


def position_of(doc, offset: int) -> types.Position:
    """Client position of a document offset (an offset between ``\\r`` and ``\\n`` is the end of that line)."""
    lines, starts = _lines_and_starts(doc)
    if not lines:
        return types.Position(0, 0)
    offset = max(0, min(offset, len(doc.source)))
    i = bisect.bisect_right(starts, offset) - 1
    line = lines[i]
    content = _content(line)
    if offset - starts[i] >= len(line) and len(line) > len(content):
        return types.Position(len(lines), 0)  # the very end of a document that ends with a line break
    col = min(offset - starts[i], len(content))
    return types.Position(i, doc.position_codec.impl.num_units(line[:col]))


def check_usable(doc, max_chars: int) -> None:
    """Raise ``DocumentProblem`` for documents Diffill will not read: over ``max_chars``, binary (NUL
    characters) or not valid Unicode (unpaired surrogates, which no tokenizer accepts)."""
    source = doc.source
    if len(source) > max_chars:
        raise DocumentProblem(f"{doc.uri} has {len(source):,} characters, more than maxDocumentChars ({max_chars:,})")
    problem = doc._problem if isinstance(doc, LspTextDocument) and doc._lines_of is source else _NOT_SCANNED
    if problem is _NOT_SCANNED:
        problem = None
        if "\x00" in source:
            problem = f"{doc.uri} looks binary (it contains NUL characters)"
        elif _SURROGATE.search(source):
            problem = f"{doc.uri} is not valid Unicode (it contains unpaired surrogate code points)"
        if isinstance(doc, LspTextDocument):
            doc._split()
            doc._problem = problem
    if problem:
        raise DocumentProblem(problem)


@dataclass
class Around:
    prefix: str   # text before the gap, at most contextChars
    suffix: str   # text after the gap, at most contextChars
    start: int    # gap start offset in the document
    end: int      # gap end offset


def around(source: str, start: int, end: int, context_chars: int) -> Around:
    return Around(source[max(0, start - context_chars):start], source[end:end + context_chars], start, end)
