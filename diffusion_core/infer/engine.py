"""The jobs Diffill offers, on one loaded masked LM.

fill (one gap, N ranked candidates), fill_gaps (several gaps), continue_text
(empty suffix), bridge (interpolate between two passages), rewrite (re-mask a
passage's least confident tokens and denoise again) and proofread (correct
the words a writer more likely meant otherwise; proofread.py, proofreader.py, channel.py).

A gap of unknown length is filled by grow (grow.py): written in reading order
and cut where the model says the gap ends; several gaps one after another
from the left, each seeing the fills before it.  A gap whose length is given
is denoised (sampler.py): several slots committed per pass.  The
``strategy`` setting picks the denoising of given lengths: ``diffusion``
(the product), or the evaluation baselines ``one-shot`` (every slot in one
pass, plain BERT) and ``left-to-right`` (one token per pass); under grow it
only decides whether a pass may also commit the slots the model is sure of.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from diffusion_core.infer import proofread as proofreading
from diffusion_core.infer.canvas import before_gap, build_canvas, decode_fill, frame_ids, special_ids, window_ids
from diffusion_core.infer.grow import GROW_WINDOW, grow
from diffusion_core.infer.proofreader import EXACT_CONTEXT, Proofreader
from diffusion_core.infer.joining import (WHOLE, breaks_line, ends_sentence_early, fit, is_blank, opens_line,
                                         stays_in_line)
from diffusion_core.model.mlm_head import MaskedLMRunner
from diffusion_core.model.context_cache import ContextCache, padded
from diffusion_core.model.llama import NativeLlamaDenoiser
from diffusion_core.model.loading import LoadedModel
from diffusion_core.infer.sampler import Cancelled, SamplerConfig, denoise
from diffusion_core.settings import BY_NAME

STRATEGIES = ("diffusion", "one-shot", "left-to-right")
GROW_GUESSES = 2  # grow on a Llama denoiser: next tokens guessed per pass (grow.py; 2 measured best, docs/performance.md)
GROW_REFRESH = 4  # grow on a Llama denoiser: a full pass every N, the rest reuse the context (context_cache.py)
JOBS = ("fill", "sized", "continue", "bridge")  # what a fill of unknown length is for (length_prior)
__all__ = ["InfillEngine", "EngineSettings", "Fill", "Cancelled", "STRATEGIES"]


@dataclass(frozen=True)
class EngineSettings:
    strategy: str = "diffusion"
    steps: int | None = None          # given lengths: at most this many passes (None: slots / tokens_per_step)
    tokens_per_step: float = 2.0      # given lengths: how many slots one pass commits on average
    threshold: float | None = BY_NAME["threshold"].default       # also commit slots this sure (diffusion only)
    context_tokens: int = BY_NAME["contextTokens"].default  # tokens of context on each side (training: 128)
    max_tokens: int = BY_NAME["maxTokens"].default          # longest fill when the length is unknown
    proofread_margin: float = BY_NAME["proofreadMargin"].default  # nats a correction must win by

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_tokens < 1 or self.context_tokens < 0:
            raise ValueError("max_tokens must be >= 1 and context_tokens >= 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be >= 1 (or None: automatic)")
        if self.tokens_per_step <= 0:
            raise ValueError("tokens_per_step must be > 0")


@dataclass(frozen=True)
class Prior:
    """How long a job's fill may run and where it may end."""
    max_tokens: int
    whole: bool = False    # end only where a sentence or a line ends (when the fill reaches one)
    min_tokens: int = 1    # end no sooner (when the fill reaches it)


def length_prior(job: str, s: "EngineSettings", size_tokens: int = 0) -> Prior:
    """The one place a job maps to its length prior (issue 32).

    ``fill`` (the cursor, ``[MASK]``, ``___``): up to the ``max_tokens`` setting; the model says where it ends
    (it cannot tell a one-word gap from a phrase: docs/experiments.md, "Length decision rules").
    ``sized`` (a gap whose size the user showed, ``size_tokens``: a selection refilled, a long blank
    ``________``): at least three quarters of that, up to twice it (at most the longest ``maxTokens``
    allows).  Measured on the dev gaps with their answers' token counts as the size (2026-12-07): similarity
    on 4-10-word prose gaps 23.9 -> 37.7 % (fill / answer 0.14 -> 0.78), on 1-3-word ones 52.2 -> 54.3 %, on
    code line tails 46.4 -> 46.8 %; with the size in characters off by up to 2x, 37.1, 51.8 and 44.5 %.
    ``continue`` (nothing after the text): on to the end of a sentence or a line, at most 48 tokens, so a
    continuation is never cut mid-clause.  ``bridge`` (between two paragraphs): one or two whole sentences,
    at most 64 tokens.
    """
    if job == "fill":
        return Prior(s.max_tokens)
    if job == "sized":
        return Prior(min(BY_NAME["maxTokens"].bounds[1], max(2, 2 * size_tokens)),
                     min_tokens=max(1, round(0.75 * size_tokens)))
    if job == "continue":
        return Prior(max(s.max_tokens, 48), whole=True)
    if job == "bridge":
        return Prior(max(s.max_tokens, 64), whole=True)
    raise ValueError(f"unknown job {job!r}; choose one of {', '.join(JOBS)}")


@dataclass
class Fill:
    text: str            # inserted text only, fitted to the text around the gap (joining.fit)
    score: float         # mean log-probability of its tokens (higher = surer)
    tokens: int          # tokens filled
    passes: int          # forward passes spent on the whole job
    texts: list[str] = field(default_factory=list)  # per gap, for fills of several gaps

    @property
    def total(self) -> float:
        """Total log-probability of the tokens: what the candidates after the pick are ranked by."""
        return self.score * self.tokens


@dataclass
class _TokenTests:
    """Per vocabulary id (V,): the tests joining.py's rules need, computed once per model."""
    breaks: torch.Tensor     # bool: the token holds a line break
    blank: torch.Tensor      # bool: it shows nothing on its own
    indent: torch.Tensor     # bool: it is only spaces or tabs (indentation at a line's start)
    opens: torch.Tensor      # bool: it opens with a line break
    word: torch.Tensor       # long: an id per lower-cased word it spells (-1: not a word)


class InfillEngine:
    """Thread-safe wrapper: one job at a time per engine (the model is not re-entrant)."""

    def __init__(self, loaded: LoadedModel, settings: EngineSettings | None = None):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.settings = settings or EngineSettings()
        self.runner = MaskedLMRunner(loaded.model).eval()
        self.null_id = loaded.null_token_id
        max_pos = getattr(loaded.model.config, "max_position_embeddings", 512) or 512
        self.max_positions = int(max_pos)
        self._lock = threading.Lock()
        self._control = [i for i in special_ids(self.tokenizer) if i != self.null_id]  # never text
        never = self._control + ([self.null_id] if self.null_id is not None else [])
        self._never = torch.tensor(never, dtype=torch.long)  # a fill of given length writes none of these
        self._tests: _TokenTests | None = None

    # -- plumbing -------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, ban: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, V) at ``positions`` of ``ids`` (B, T); the ``ban`` ids (default: the control tokens and
        the null token, which a fill of given length never writes) get -inf."""
        attention = (ids != self.tokenizer.pad_token_id) | positions | (ids == self.tokenizer.mask_token_id)
        # a few canvas lengths, not one per keystroke (context_cache.py), within the model's positions
        fill = max(0, min(padded(ids.shape[1]), self.max_positions) - ids.shape[1])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.mask_token_id
        ids = F.pad(ids, (0, fill), value=pad)                          # (B, T'): the padding is never read
        attention, positions = (F.pad(t, (0, fill)) for t in (attention, positions))
        logits = self.runner(ids, attention.long(), positions)          # (N, V)
        ban = self._never if ban is None else ban
        return logits.index_fill(-1, ban[ban < logits.shape[-1]], float("-inf"))

    def _sampler(self, s: EngineSettings, slots: int) -> SamplerConfig:
        if s.strategy == "one-shot":
            return SamplerConfig(steps=1)
        if s.strategy == "left-to-right":
            return SamplerConfig(steps=max(1, slots), order="left-to-right")
        steps = s.steps or max(1, math.ceil(slots / s.tokens_per_step))
        return SamplerConfig(steps=min(steps, slots), threshold=s.threshold,
                             min_commit=max(1, int(s.tokens_per_step)))

    def _context(self, s: EngineSettings, slots: int, n_gaps: int) -> int:
        # Leave room for the slots and special tokens inside the model's position limit.
        room = (self.max_positions - 2 - slots * n_gaps) // 2
        return max(0, min(s.context_tokens, room))

    def _token_tests(self, vocab: int) -> _TokenTests:
        if self._tests is None or len(self._tests.breaks) != vocab:
            n = min(vocab, len(self.tokenizer))
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is not None:  # one call into the Rust tokenizer instead of one per token
                texts = backend.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
            else:
                texts = [self.tokenizer.decode([i]) for i in range(n)]
            texts += [""] * (vocab - n)
            words: dict[str, int] = {}
            keys = [words.setdefault(t.strip().lower(), len(words)) if t.strip().isalpha() else -1 for t in texts]
            tests = _TokenTests(torch.tensor([breaks_line(t) for t in texts]),
                                torch.tensor([is_blank(t) for t in texts]),
                                torch.tensor([bool(t) and not t.strip(" \t") for t in texts]),
                                torch.tensor([opens_line(t) for t in texts]), torch.tensor(keys))
            if self.null_id is not None and self.null_id < vocab:  # the null token is grow's end signal, not text
                for mask in (tests.breaks, tests.blank, tests.indent, tests.opens):
                    mask[self.null_id] = False
                tests.word[self.null_id] = -1
            self._tests = tests
        return self._tests

    def _first_slot_ban(self, vocab: int, line_start: bool) -> torch.Tensor:
        """(V,) tokens a fill never opens with: one that shows nothing (it would read as an empty fill), one
        that opens with a line break (a stray line break before the fill), except indentation at the start of
        a line (the gap took the line's indentation: canvas.before_gap)."""
        t = self._token_tests(vocab)
        return t.opens | (t.blank & ~(t.indent & line_start))

    def _seams(self, inline: bool, line_start: bool, before: int | None, unlike: list[int]) -> Callable:
        """grow's ``ban(logits (S, V), written)``: the rules of joining.py while a fill is written.  A fill kept
        ``inline`` writes no line break; its first token passes ``_first_slot_ban``; a word never follows the
        same word (``def def``), at the seam with ``before`` (the last known token) or inside the fill; and it
        never opens with one of the ``unlike`` tokens."""
        def ban(logits: torch.Tensor, written: list[int]) -> torch.Tensor:
            vocab = logits.shape[-1]
            t = self._token_tests(vocab)
            banned = torch.zeros(logits.shape, dtype=torch.bool)       # (S, V)
            if inline:
                banned |= t.breaks
            if not written:
                banned[0] |= self._first_slot_ban(vocab, line_start)
                banned[0, [i for i in unlike if i < vocab]] = True
            shown = [i for i in written if i < vocab and not t.blank[i]]   # a byte or a space is no word
            last = shown[-1] if shown else before
            if last is not None and last < vocab and int(t.word[last]) >= 0:
                banned[0] |= t.word == t.word[last]
            return logits.masked_fill(banned, float("-inf"))
        return ban

    # -- jobs -----------------------------------------------------------------
    @torch.no_grad()
    def fill_gaps(self, pieces: list[str], lengths: list[int] | None = None, candidates: int = 1,
                  on_step: Callable | None = None, settings: EngineSettings | None = None,
                  inline: Sequence[bool] | None = None, unlike: str | None = None,
                  job: str = "fill", sizes: Sequence[int | None] | None = None) -> list[Fill]:
        """Fill the gaps between ``pieces``; ``lengths`` (tokens per gap) or None to let the model choose.

        Fills join the text as ``joining.py`` says: ``inline`` (per gap; default: whether text follows the gap
        on its line) keeps a gap's fill within its line, and every text is fitted to its sides.  Returns up
        to ``candidates`` fills, best first (one gap of unknown length: grow's best cuts; otherwise one);
        ``Fill.texts`` holds one text per gap.  ``unlike``: text the first gap's fill must not open as (a
        selection being refilled: the user wants other text, and about as much of it).  ``job`` sets how
        long a fill of unknown length may be and where it may end (``length_prior``); ``sizes``: per gap, the
        characters the user asked for (a long blank, ``markers.hinted_size``), or None.
        """
        s = settings or self.settings
        n_gaps = len(pieces) - 1
        if n_gaps < 1:
            raise ValueError("nothing to fill: no gap between the pieces")
        inline = [stays_in_line(p) for p in pieces[1:]] if inline is None else list(inline)
        if len(inline) != n_gaps:
            raise ValueError(f"inline: one flag per gap ({n_gaps}), not {len(inline)}")
        if lengths is None:
            sizes = [None] * n_gaps if sizes is None else list(sizes)
            if len(sizes) != n_gaps:
                raise ValueError(f"sizes: one size (or None) per gap ({n_gaps}), not {len(sizes)}")
            # a gap's size in tokens: a refilled selection's own, a long blank's characters as tokens, or none
            tokens = [None if size is None else self._tokens_for(size, pieces[g][-200:] + pieces[g + 1][:200])
                      for g, size in enumerate(sizes)]
            if unlike and job == "fill":
                tokens[0] = len(self.tokenizer(unlike, add_special_tokens=False).input_ids)
            priors = [length_prior(job, s) if n is None else length_prior("sized", s, n) for n in tokens]
            return self._grow_gaps(pieces, candidates, on_step, s, inline, unlike, priors)
        if len(lengths) != n_gaps or min(lengths) < 1:
            raise ValueError(f"lengths: one length >= 1 per gap ({n_gaps})")
        return [self._denoise_gaps(pieces, list(lengths), on_step, s, inline)]

    def _denoise_gaps(self, pieces: list[str], lengths: list[int], on_step, s: EngineSettings,
                      inline: Sequence[bool]) -> Fill:
        """Gaps of given lengths, denoised jointly in one canvas."""
        with self._lock:
            canvas = build_canvas(self.tokenizer, pieces, lengths, self._context(s, max(lengths), len(lengths)))
            slot_bans: list[torch.Tensor] = []                                # (T, V), on the first pass

            def forward(ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
                logits = self._forward(ids, positions)                         # (N, V)
                if not slot_bans:
                    slot_bans.append(self._slot_bans(canvas, pieces, inline, logits.shape[-1]))
                return logits.masked_fill(slot_bans[0][positions[0]], float("-inf"))
            result = denoise(forward, canvas.ids[None], canvas.known[None], self.tokenizer.mask_token_id,
                             self._sampler(s, max(lengths)), on_step)
        texts, logp = [], []
        for g, ((a, b), anchor) in enumerate(zip(canvas.gaps, canvas.anchors)):
            text = decode_fill(self.tokenizer, anchor, result.ids[0, a:b].tolist())
            texts.append(fit(pieces[g], text, pieces[g + 1]))
            logp += result.confidence[0, a:b].clamp_min(1e-9).log().tolist()
        return Fill("".join(texts), sum(logp) / len(logp), len(logp), result.passes, texts)

    def _slot_bans(self, canvas, pieces: list[str], inline: Sequence[bool], vocab: int) -> torch.Tensor:
        """(T, V): the tokens each slot of ``canvas`` may not hold (joining.py's rules, as in ``_seams``)."""
        t = self._token_tests(vocab)
        bans = torch.zeros((len(canvas.ids), vocab), dtype=torch.bool)
        for g, (a, b) in enumerate(canvas.gaps):
            if inline[g]:
                bans[a:b] |= t.breaks
            bans[a] |= self._first_slot_ban(vocab, _at_line_start(pieces[g]))
        return bans

    def _may_end(self, prior: Prior, after: str) -> Callable[[list[int]], bool]:
        """Where a fill may end: no sooner than its prior's ``min_tokens``, at a sentence's or line's end if the
        prior wants whole ones, and never with a sentence's end that the text ``after`` it goes on with."""
        def may_end(written: list[int]) -> bool:
            text = self.tokenizer.decode(written)
            return len(written) >= prior.min_tokens and not (prior.whole and not WHOLE.search(text)) \
                and not ends_sentence_early(text, after)
        return may_end

    def _tokens_for(self, chars: int, around: str) -> int:
        """About how many tokens ``chars`` characters are, as the text ``around`` a gap spells them (code and
        prose differ: about 3 and 4.5 characters a token), or 4 characters a token with little text."""
        per_char = len(self.tokenizer(around, add_special_tokens=False).input_ids) / len(around) \
            if len(around) >= 40 else 0.25
        return max(1, round(chars * per_char))

    def _openings(self, text: str | None) -> list[int]:
        """The first token of the first word of each line of ``text``, spelled as it would open a fill (with
        and without the space before it)."""
        encode = lambda t: self.tokenizer(t, add_special_tokens=False).input_ids  # noqa: E731
        words = [line.split()[0] for line in (text or "").splitlines() if line.split()]
        return sorted({ids[0] for w in words for ids in (encode(w), encode(" " + w)) if ids})

    def _grow_sides(self, done: str, rest: list[str], ctx: int) -> tuple[list[int], list[int], list[int]]:
        """Token ids before and after the gap being grown: the text so far (fills included) up to it, and the
        ``ctx`` tokens that follow it, later gaps among them as ``GROW_WINDOW`` masked slots each.  A later
        gap beyond that window is not shown at all, so gaps far apart are filled as each would be alone.  Also the
        anchor: the known tokens just before the gap (for decoding the fill's spacing exactly)."""
        tok = self.tokenizer
        cls, sep = frame_ids(tok)
        left = window_ids(tok, before_gap(done), ctx, "tail")
        after: list[int] = []
        for k, piece in enumerate(rest):
            if k and len(after) < ctx:
                after += [tok.mask_token_id] * GROW_WINDOW
            last = k == len(rest) - 1
            after += window_ids(tok, piece if last else before_gap(piece), ctx - len(after), "head")
            if len(after) >= ctx:
                break
        before = ([cls] if cls is not None else []) + left
        return before, after + ([sep] if sep is not None else []), left[-4:]

    def _grow_gaps(self, pieces: list[str], candidates: int, on_step, s: EngineSettings,
                   inline: Sequence[bool], unlike: str | None, priors: list[Prior]) -> list[Fill]:
        """Gaps of unknown length by grow, one after another from the left (each sees the fills before it),
        each as its prior says; with one gap, the ``candidates`` best-claimed cuts."""
        keep = max(1, candidates) if len(pieces) == 2 else 1
        done, texts, passes, logps = pieces[0], [], 0, []
        for g, prior in enumerate(priors):
            with self._lock:
                before, after, anchor = self._grow_sides(done, pieces[g + 1:], self._context(s, prior.max_tokens, 1))
                # The gap ends where the model writes the null token or the text after the gap (its first
                # token); a model without a null token, before the end of the text, has only the end token.
                ends = [self.null_id] if self.null_id is not None else []
                if after[0] not in self._control or not ends:
                    ends.append(after[0])
                ban = torch.tensor([i for i in self._control if i not in ends], dtype=torch.long)
                model = self.loaded.model
                rows = None
                if isinstance(model, NativeLlamaDenoiser) and model.denoiser.layout == "full":
                    forward = ContextCache(model, GROW_REFRESH, ban)
                    rows = forward.rows
                else:
                    forward = lambda ids, positions: self._forward(ids, positions, ban)  # noqa: E731
                seams = self._seams(inline[g], _at_line_start(done), before[-1] if len(before) else None,
                                    self._openings(unlike) if g == 0 else [])
                sure = s.threshold if s.strategy == "diffusion" else None
                # the end tokens mean the end: a fill never writes them
                may_end = self._may_end(prior, pieces[g + 1])
                grown = grow(forward, torch.tensor(before), torch.tensor(after), self.tokenizer.mask_token_id,
                             ends, ends, prior.max_tokens, GROW_WINDOW, sure, seams, on_step, keep, may_end,
                             rows, GROW_GUESSES)
            fills, blank = [], []
            seen: set[str] = set()
            for length in grown.best(len(grown.claims)):
                text = fit(done, decode_fill(self.tokenizer, anchor, grown.tokens[:length]), pieces[g + 1])
                if text in seen:  # two cuts can read the same once fitted (trailing spaces): one candidate
                    continue
                seen.add(text)
                # a cut that shows nothing (a lone byte of a character decodes to nothing) is a last resort
                (fills if text.strip() else blank).append((text, length))
            ranked = (fills + blank)[:keep]
            passes += grown.passes
            if len(pieces) == 2:
                return [Fill(text, sum(grown.logp[:n]) / n, n, passes, [text]) for text, n in ranked]
            text, length = ranked[0]
            texts.append(text)
            logps += grown.logp[:length]
            done += text + pieces[g + 1]
        return [Fill("".join(texts), sum(logps) / max(1, len(logps)), len(logps), passes, texts)]

    def fill(self, prefix: str, suffix: str, length: int | None = None, candidates: int = 1,
             on_step: Callable | None = None, settings: EngineSettings | None = None,
             inline: bool | None = None, unlike: str | None = None, job: str = "fill") -> list[Fill]:
        """Fill one gap between ``prefix`` and ``suffix``; best candidate first (``inline``, ``unlike``, ``job``:
        see fill_gaps)."""
        return self.fill_gaps([prefix, suffix], None if length is None else [length], candidates, on_step, settings,
                              None if inline is None else [inline], unlike, job)

    def continue_text(self, prefix: str, length: int | None = None, **kw) -> list[Fill]:
        """Write on from the end of ``prefix`` (nothing after it) to the end of a sentence or line.  On a new
        line it never opens the way one of the last three lines does: continuing a function after its
        docstring, the model wrote the ``def`` line again."""
        lines = [line for line in prefix.splitlines() if line.strip()][-3:] if _at_line_start(prefix) else []
        return self.fill(prefix, "", length, job="continue", unlike="\n".join(lines) or None, **kw)

    def bridge(self, above: str, below: str, length: int | None = None, **kw) -> list[Fill]:
        """Write a sentence or two that leads from ``above`` into ``below`` (interpolation).

        The model reads the two passages as one paragraph with the gap inside it, and the fill is then placed
        between them as they are written: laid out between two blank lines, the gap is one the model never
        saw in training, and it writes digits there (``2``, ``200``) where inside a paragraph it writes
        ``We were greeted by a warm welcome.``"""
        fills = self.fill(above.rstrip() + " ", " " + below.lstrip(), length, job="bridge", inline=True, **kw)
        for f in fills:
            f.text = fit(above, f.text.strip(), below)
            f.texts = [f.text]
        return fills

    @torch.no_grad()
    def rewrite(self, prefix: str, passage: str, suffix: str, strength: float = 0.3,
                on_step: Callable | None = None, settings: EngineSettings | None = None) -> Fill:
        """Re-mask the ``strength`` fraction of ``passage``'s least likely tokens and denoise them again.

        Each token's likelihood comes from a batched pass in which a quarter of
        the passage is masked per row (every token is scored while hidden).
        """
        s = settings or self.settings
        tok = self.tokenizer
        body = tok(passage, add_special_tokens=False).input_ids[: self.max_positions // 2]
        if not body:
            return Fill("", 0.0, 0, 0, [""])
        with self._lock:
            canvas = build_canvas(tok, [prefix, suffix], [len(body)], self._context(s, len(body), 1))
            a, b = canvas.gaps[0]
            base = canvas.ids.clone()
            base[a:b] = torch.tensor(body)
            groups = min(4, len(body))
            rows = base.repeat(groups, 1)                               # (G, T)
            positions = torch.zeros_like(rows, dtype=torch.bool)
            for g in range(groups):
                positions[g, a + g:b:groups] = True
            masked_rows = rows.masked_fill(positions, tok.mask_token_id)
            logp = self._forward(masked_rows, positions).float().log_softmax(-1)  # (len(body), V)
            target = rows[positions]
            token_logp = logp.gather(-1, target[:, None]).squeeze(-1)
            grid = torch.zeros(rows.shape)
            grid[positions] = token_logp
            per_token = grid.sum(0)[a:b]                                # (len(body),)
            n_remask = max(1, round(strength * len(body)))
            worst = per_token.argsort()[:n_remask]
            ids = base.clone()
            ids[a + worst] = tok.mask_token_id
            known = torch.ones_like(ids, dtype=torch.bool)
            known[a + worst] = False
            # the seams of joining.py: a passage on one line with text after it stays on its line, and its first
            # token neither shows nothing nor opens a line (a made-up word mid-line came back as '\n "xwv')
            bans = self._slot_bans(canvas, [prefix, suffix], [stays_in_line(suffix, passage)], logp.shape[-1])

            def forward(ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
                return self._forward(ids, positions).masked_fill(bans[positions[0]], float("-inf"))
            cfg = self._sampler(s, n_remask)
            result = denoise(forward, ids[None], known[None], tok.mask_token_id, cfg, on_step)
        text = decode_fill(self.tokenizer, canvas.anchors[0], result.ids[0, a:b].tolist())
        text = fit(prefix, text, suffix)
        conf = result.confidence[0, a + worst].clamp_min(1e-9).log().mean().item()
        return Fill(text, conf, n_remask, 1 + result.passes, [text])

    @torch.no_grad()
    def proofread(self, prefix: str, passage: str, suffix: str, margin: float | None = None,
                  on_step: Callable | None = None, settings: EngineSettings | None = None) -> proofreading.Proofread:
        """The words of ``passage`` a writer more likely meant otherwise, replaced (``proofread.py`` says how,
        ``proofreader.py`` scores).  ``margin``: nats by which a correction must beat the word (default: the
        ``proofreadMargin`` setting)."""
        s = settings or self.settings
        margin = s.proofread_margin if margin is None else margin
        reader = Proofreader(self.tokenizer, self._forward, lambda tokens: self._context(s, tokens, 1),
                             min(EXACT_CONTEXT, s.context_tokens))
        with self._lock:
            return reader.proofread(prefix, passage, suffix, margin, on_step)


def _at_line_start(before: str) -> bool:
    """Whether a gap after ``before`` starts a line (its indentation belongs to the gap: canvas.before_gap)."""
    text = before_gap(before)
    return not text or text.endswith(("\n", "\r"))
