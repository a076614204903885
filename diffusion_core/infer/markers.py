"""Gap markers in plain text: where the user wants Diffill to write.

The default marker is ``[MASK]``; a run of three or more underscores
(``___``) also works.  Any regular expression can be given instead
(``--marker`` on the command line, ``gapMarker`` in the server).
"""
from __future__ import annotations

import re

DEFAULT_MARKER = r"\[MASK\]|_{3,}"


def compile_marker(pattern: str | None) -> re.Pattern:
    try:
        rx = re.compile(pattern or DEFAULT_MARKER)
    except re.error as exc:
        raise ValueError(f"invalid gap marker regex {pattern!r}: {exc}") from exc
    if rx.match(""):
        raise ValueError(f"gap marker {pattern!r} matches the empty string")
    return rx


def split_gaps(text: str, marker: re.Pattern) -> tuple[list[str], list[tuple[int, int]]]:
    """Pieces of text around the markers, and each marker's (start, end) offsets."""
    spans = [m.span() for m in marker.finditer(text)]
    pieces, last = [], 0
    for s, e in spans:
        pieces.append(text[last:s])
        last = e
    pieces.append(text[last:])
    return pieces, spans


def join_fills(pieces: list[str], fills: list[str]) -> str:
    out = [pieces[0]]
    for fill, piece in zip(fills, pieces[1:]):
        out += [fill, piece]
    return "".join(out)
