"""From an open document and client positions to the text around a gap.

Positions arrive in the negotiated encoding (UTF-16 unless the client chose
otherwise); pygls' position codec maps them to Python string offsets, so
emoji, CJK and combining characters land where the editor shows them.
"""
from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams


class DocumentProblem(Exception):
    """The document cannot be used for completion (binary, too large); the message says why."""


@dataclass
class Around:
    prefix: str   # text before the gap, at most contextChars
    suffix: str   # text after the gap, at most contextChars
    start: int    # gap start offset in the document
    end: int      # gap end offset


def offset_of(doc, position: types.Position) -> int:
    """Offset of a client position; a line past the end is an error, a column past the line end is clamped
    (as the LSP spec says)."""
    lines = doc.lines
    if position.line < 0 or position.character < 0:
        raise JsonRpcInvalidParams(f"negative position {position.line}:{position.character}")
    if position.line > len(lines) or (position.line == len(lines) and position.character > 0):
        raise JsonRpcInvalidParams(
            f"position {position.line}:{position.character} is past the end of {doc.uri} ({len(lines)} lines)")
    if position.line == len(lines):
        return len(doc.source)
    line = lines[position.line].rstrip("\r\n")
    limit = doc.position_codec.client_num_units(line)
    clamped = types.Position(position.line, min(position.character, limit))
    return doc.offset_at_position(clamped)


def position_of(doc, offset: int) -> types.Position:
    pos = doc.server_position_at_offset(offset)  # code points
    return doc.position_codec.position_to_client_units(doc.lines, types.Position(pos.line, pos.character))


def check_usable(doc, max_chars: int) -> None:
    source = doc.source
    if len(source) > max_chars:
        raise DocumentProblem(f"{doc.uri} has {len(source):,} characters, more than maxDocumentChars ({max_chars:,})")
    if "\x00" in source[:100_000]:
        raise DocumentProblem(f"{doc.uri} looks binary (it contains NUL characters)")


def around(source: str, start: int, end: int, context_chars: int) -> Around:
    return Around(source[max(0, start - context_chars):start], source[end:end + context_chars], start, end)
