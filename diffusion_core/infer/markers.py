"""Gap markers in plain text: where the user wants Diffill to write.

The default marker is ``[MASK]``; a run of three or more underscores
(``___``) also works.  Any regular expression can be given instead
(``--marker`` on the command line, ``gapMarker`` in the server).

A blank's length can say how much to write: a run of four or more underscores asks for about as many
characters as it has (``hinted_size``), the way a cloze test sizes its blanks; ``[MASK]`` and ``___`` leave the
length to the model, which cannot tell a one-word gap from a phrase (docs/experiments.md).  Measured on the dev
gaps with a size off by up to 2x (2026-12-07): similarity on 4-10-word prose gaps 23.9 -> 37.1 %.
"""
from __future__ import annotations

import re

DEFAULT_MARKER = r"\[MASK\]|_{3,}"
SIZED_BLANK = re.compile(r"_{4,}")


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


def hinted_size(marked: str) -> int | None:
    """The characters a marker's own text asks for: its length for four or more underscores, else None."""
    return len(marked) if SIZED_BLANK.fullmatch(marked) else None


def join_fills(pieces: list[str], fills: list[str]) -> str:
    out = [pieces[0]]
    for fill, piece in zip(fills, pieces[1:]):
        out += [fill, piece]
    return "".join(out)
