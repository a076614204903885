"""Editor jobs as plans: what text to send to the engine and which document ranges the results replace.

A plan is built on the event loop from the document (cheap string slicing)
and its ``run`` callable executes on the worker thread.  Every job returns a
list of ``Replacement`` (document offsets + new text), so code actions,
commands and completions share one way to turn fills into edits.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffusion_core.infer.engine import EngineSettings
from diffusion_core.infer.markers import compile_marker, hinted_size, split_gaps
from diffusion_core.infer.joining import stays_in_line

from .config import Settings
from .documents import around

JOBS = ("fillGaps", "fillSelection", "rewriteSelection", "proofreadSelection", "bridge", "continue")
TITLES = {"fillGaps": "Diffill: fill gaps", "fillSelection": "Diffill: fill selection",
          "rewriteSelection": "Diffill: rewrite selection", "proofreadSelection": "Diffill: proofread selection",
          "bridge": "Diffill: bridge paragraphs", "continue": "Diffill: continue writing"}


@dataclass
class Replacement:
    start: int
    end: int
    text: str


@dataclass
class Plan:
    job: str
    run: Callable  # run(engine, on_step) on the worker thread -> list[Replacement] (a cursor plan: list[str])


def engine_settings(s: Settings) -> EngineSettings:
    return EngineSettings(steps=s.steps or None, threshold=s.threshold or None,
                          max_tokens=s.maxTokens, context_tokens=s.contextTokens, proofread_margin=s.proofreadMargin)


def cursor_fills(source: str, offset: int, s: Settings, candidates: int) -> Plan:
    """Fills at the cursor (inline and completion items): mid-line cursors get fills within the line, and
    every fill opens with text on the cursor's line (the engine's rules, joining.py).  Its run returns the
    texts, not replacements: the completion feature places them."""
    ctx = around(source, offset, offset, s.contextChars)
    es = engine_settings(s)

    def run(engine, on_step) -> list[str]:
        fills = engine.fill_gaps([ctx.prefix, ctx.suffix], candidates=candidates, on_step=on_step, settings=es)
        return list(dict.fromkeys(f.text for f in fills if f.text.strip()))
    return Plan("cursor", run)


def plan_job(job: str, source: str, start: int, end: int, s: Settings) -> Plan | None:
    """The plan for ``job`` on the range [start, end) of ``source``, or None when it does not apply there."""
    es = engine_settings(s)
    if job == "fillGaps":
        lo, hi = (start, end) if end > start else (0, len(source))
        marker = compile_marker(s.gapMarker)
        spans = [(lo + a, lo + b) for a, b in split_gaps(source[lo:hi], marker)[1]]
        if not spans:
            return None
        pieces = [source[max(0, spans[0][0] - s.contextChars):spans[0][0]]]
        pieces += [source[b:a2] for (_, b), (a2, _) in zip(spans, spans[1:])]
        pieces.append(source[spans[-1][1]:spans[-1][1] + s.contextChars])

        def run(engine, on_step):
            fill = engine.fill_gaps(pieces, on_step=on_step, settings=es,
                                    sizes=[hinted_size(source[a:b]) for a, b in spans])[0]
            return [Replacement(a, b, t) for (a, b), t in zip(spans, fill.texts)]
        return Plan(job, run)
    ctx = around(source, start, end, s.contextChars)
    if job == "proofreadSelection":
        if end <= start or not source[start:end].strip():
            return None
        selected = source[start:end]

        def run(engine, on_step):
            # One replacement per changed word: every character it does not change stays as it was.
            result = engine.proofread(ctx.prefix, selected, ctx.suffix, on_step=on_step, settings=es)
            return [Replacement(start + c.start, start + c.end, c.new) for c in result.changes]
        return Plan(job, run)
    if job in ("fillSelection", "rewriteSelection"):
        if end <= start:
            return None
        selected = source[start:end]
        if job == "fillSelection":
            inline = stays_in_line(ctx.suffix, selected)  # a selection across lines may be refilled across lines

            def run(engine, on_step):
                # Asked to refill a selection, the user wants other text: a fill that does not open as it does.
                fill = engine.fill(ctx.prefix, ctx.suffix, on_step=on_step, settings=es, inline=inline,
                                   unlike=selected)[0]
                return [Replacement(start, end, fill.text)]
        else:
            def run(engine, on_step):
                return [Replacement(start, end, engine.rewrite(ctx.prefix, selected, ctx.suffix, on_step=on_step,
                                                               settings=es).text)]
        return Plan(job, run)
    if end > start:
        return None
    if job == "continue":
        if source[start:].strip():
            return None

        def run(engine, on_step):
            return [Replacement(start, start, engine.continue_text(ctx.prefix, on_step=on_step, settings=es)[0].text)]
        return Plan(job, run)
    if job == "bridge":
        line_start = source.rfind("\n", 0, start) + 1
        line_end = source.find("\n", start)
        line_end = len(source) if line_end < 0 else line_end
        if source[line_start:line_end].strip() or not ctx.prefix.strip() or not ctx.suffix.strip():
            return None

        def run(engine, on_step):
            fill = engine.bridge(ctx.prefix, ctx.suffix, on_step=on_step, settings=es)[0]
            return [Replacement(start, start, fill.text)]
        return Plan(job, run)
    raise ValueError(f"unknown job {job!r}; choose one of {', '.join(JOBS)}")
