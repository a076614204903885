"""The jobs Diffill offers, on one loaded masked LM.

fill (one gap, N ranked candidates), fill_gaps (several gaps jointly),
continue_text (empty suffix), bridge (interpolate between two passages),
rewrite (re-mask a passage's least confident tokens and denoise again) and
proofread (replace the words the model thinks are wrong; proofread.py).
Every job takes a ``strategy``: ``diffusion`` (several steps, parallel
commits), or the baselines ``one-shot`` (all slots in a single pass, plain
BERT) and ``left-to-right`` (one token per pass, in reading order).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from . import proofread as proofreading
from .canvas import build_canvas, decode_fill, special_ids
from .cut import GROW_WINDOW, Grown, grow
from .hybrid import ShortRace, end_check, rank
from .joining import breaks_line, fit, is_blank, stays_in_line
from .lengths import DEFAULT_BETA, DEFAULT_CANDIDATES, pad_rows, probe_lengths
from .model.context_cache import ContextCache
from .model.llama import NativeLlamaDenoiser
from .model.loading import LoadedModel
from .mlm_head import MaskedLMRunner
from .null_rules import NullRules
from .sampler import Cancelled, SamplerConfig, denoise

STRATEGIES = ("diffusion", "one-shot", "left-to-right")
LENGTH_MODES = ("grow", "hybrid", "marginal", "slots", "probe")
DEFAULT_SHORT_CONFIDENCE = 0.3
GROW_REFRESH = 4  # grow mode on a Llama denoiser: a full pass every N, the rest reuse the context (context_cache.py)
__all__ = ["InfillEngine", "EngineSettings", "Fill", "Cancelled", "STRATEGIES"]


@dataclass(frozen=True)
class EngineSettings:
    strategy: str = "diffusion"
    steps: int | None = None          # None: ceil(slots / tokens_per_step)
    tokens_per_step: float = 2.0      # diffusion: how many slots one pass commits on average
    threshold: float | None = 0.9     # diffusion: also commit every slot at least this sure
    order: str = "confidence"
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    refine_rounds: int = 0
    revise_below: float | None = None  # diffusion: re-mask a committed token the model later finds this unlikely
                                       # (for models trained with replaced-token noise; off until measured)
    context_tokens: int = 48          # tokens of context kept on each side (training windows are 128 tokens)
    max_tokens: int = 32              # longest gap probed when the length is unknown
    length_mode: str | None = None    # unknown length: grow | hybrid | marginal | slots | probe (see fill_gaps);
                                      # None: the model's diffill_length_mode, else hybrid
    null_slots: int = 16              # hybrid, marginal and slots modes: slots per gap (capped by max_tokens)
    null_threshold: float | None = None  # marginal mode: a slot this likely null ends the gap (None: the
                                         # model's calibrated diffill_null_threshold, else 0.5)
    short_lengths: tuple[int, ...] = (1, 2, 3)  # hybrid mode: short lengths filled beside the marginal row
    short_confidence: float | None = None  # hybrid mode: a short fill whose mean token probability reaches
                                           # this wins (None: the model's diffill_short_confidence, else 0.3)
    length_candidates: tuple[int, ...] = DEFAULT_CANDIDATES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_tokens < 1 or self.context_tokens < 0 or self.null_slots < 1:
            raise ValueError("max_tokens and null_slots must be >= 1 and context_tokens >= 0")
        if not self.short_lengths or min(self.short_lengths) < 1:
            raise ValueError("short_lengths must be a non-empty list of lengths >= 1")
        if self.length_mode is not None and self.length_mode not in LENGTH_MODES:
            raise ValueError(f"unknown length mode {self.length_mode!r}; choose one of {', '.join(LENGTH_MODES)}")
        SamplerConfig(order=self.order, revise_below=self.revise_below)


@dataclass
class Fill:
    text: str            # inserted text only, fitted to the text around the gap (joining.fit)
    score: float         # mean log-probability of its tokens (higher = surer)
    tokens: int          # non-null tokens filled
    passes: int          # forward passes spent on the whole job
    slots: int = 0       # slots allocated (tokens + nulls)
    texts: list[str] = field(default_factory=list)  # per gap, for joint fills

    @property
    def total(self) -> float:
        """Total log-probability over the slots (null ones included): what candidates are ranked by."""
        return self.score * self.slots


class InfillEngine:
    """Thread-safe wrapper: one job at a time per engine (the model is not re-entrant)."""

    def __init__(self, loaded: LoadedModel, settings: EngineSettings | None = None):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.settings = settings or EngineSettings()
        self.runner = MaskedLMRunner(loaded.model).eval()
        self.null_id = loaded.null_token_id
        self.beta = float(getattr(loaded.model.config, "diffill_length_beta", DEFAULT_BETA))
        self.null_threshold = float(getattr(loaded.model.config, "diffill_null_threshold", 0.5))
        self.short_confidence = float(getattr(loaded.model.config, "diffill_short_confidence",
                                              DEFAULT_SHORT_CONFIDENCE))
        self.length_mode = str(getattr(loaded.model.config, "diffill_length_mode", "hybrid"))
        if self.length_mode not in LENGTH_MODES:
            raise ValueError(f"{loaded.path}: config.json's diffill_length_mode {self.length_mode!r} is not one of "
                             f"{', '.join(LENGTH_MODES)}")
        self.end_check = bool(getattr(loaded.model.config, "diffill_end_check", False))  # hybrid.py says why
        max_pos = getattr(loaded.model.config, "max_position_embeddings", 512) or 512
        self.max_positions = int(max_pos)
        self._lock = threading.Lock()
        self._control = torch.tensor([i for i in special_ids(self.tokenizer) if i != self.null_id], dtype=torch.long)
        self._token_tests: tuple[torch.Tensor, torch.Tensor] | None = None  # (breaks_line, is_blank) per id

    # -- plumbing -------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        busy = positions.any(1)                                         # (B,)
        if not bool(busy.all()):  # rows already filled (short ones finish first) cost no compute
            ids, positions = ids[busy], positions[busy]
        attention = (ids != self.tokenizer.pad_token_id) | positions | (ids == self.tokenizer.mask_token_id)
        logits = self.runner(ids, attention.long(), positions)          # (N, V)
        control = self._control[self._control < logits.shape[-1]]
        return logits.index_fill(-1, control, float("-inf"))            # control tokens are never text

    def _grow_forward(self):
        """grow's forward: on a full-attention Llama denoiser, one that reuses the text's keys/values."""
        model = self.loaded.model
        if isinstance(model, NativeLlamaDenoiser) and model.denoiser.layout == "full" and GROW_REFRESH > 1:
            return ContextCache(model, GROW_REFRESH, self._control)
        return self._forward

    def _sampler(self, s: EngineSettings, slots: int) -> SamplerConfig:
        if s.strategy == "one-shot":
            return SamplerConfig(steps=1, order="confidence")
        if s.strategy == "left-to-right":
            return SamplerConfig(steps=max(1, slots), order="left-to-right")
        steps = s.steps or max(1, math.ceil(slots / s.tokens_per_step))
        return SamplerConfig(steps=min(steps, slots), order=s.order, temperature=s.temperature, top_k=s.top_k,
                             top_p=s.top_p, threshold=s.threshold, refine_rounds=s.refine_rounds,
                             min_commit=max(1, int(s.tokens_per_step)), revise_below=s.revise_below)

    def _context(self, s: EngineSettings, slots: int, n_gaps: int) -> int:
        # Leave room for the slots and special tokens inside the model's position limit.
        room = (self.max_positions - 2 - slots * n_gaps) // 2
        return max(0, min(s.context_tokens, room))

    def _text_of(self, ids: list[int], anchor: list[int]) -> tuple[str, int]:
        kept = [i for i in ids if i != self.null_id]
        return decode_fill(self.tokenizer, anchor, kept), len(kept)

    def _tests(self, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(V,) masks of the tokens that break a line and of those that write nothing (joining.py)."""
        if self._token_tests is None or len(self._token_tests[0]) != vocab:
            n = min(vocab, len(self.tokenizer))
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is not None:  # one call into the Rust tokenizer instead of one per token
                texts = backend.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
            else:
                texts = [self.tokenizer.decode([i]) for i in range(n)]
            breaks, blank = torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool)
            breaks[:n] = torch.tensor([breaks_line(t) for t in texts])
            blank[:n] = torch.tensor([is_blank(t) for t in texts])
            if self.null_id is not None:  # the null token's rules are NullRules' business
                breaks[self.null_id] = blank[self.null_id] = False
            self._token_tests = breaks, blank
        return self._token_tests

    def _within_lines(self, forward, canvases, inline: Sequence[bool], shape) -> Callable:
        """``forward`` with line breaks banned in the gaps filled within their line, and blank tokens in their
        first slot: such a gap always gets something written on its line."""
        line_slots = torch.zeros(shape, dtype=torch.bool)            # (B, T)
        first_slots = torch.zeros(shape, dtype=torch.bool)
        for row, canvas in enumerate(canvases):
            for (a, b), keep in zip(canvas.gaps, inline):
                if keep:
                    line_slots[row, a:b] = True
                    first_slots[row, a] = True

        def banned(ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            logits = forward(ids, positions)                           # (N, V)
            ban = self._line_bans(logits.shape[-1], line_slots[positions], first_slots[positions])
            return logits.masked_fill(ban, float("-inf"))
        return banned

    def _line_bans(self, vocab: int, line: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """(N, V) tokens banned at N slots: line breaks where ``line`` (N,), blank tokens where ``first`` (N,)."""
        breaks, blank = self._tests(vocab)
        return (line[:, None] & breaks) | (first[:, None] & blank)

    # -- jobs -----------------------------------------------------------------
    @torch.no_grad()
    def fill_gaps(self, pieces: list[str], lengths: list[int] | None = None, candidates: int = 1,
                  on_step: Callable | None = None, settings: EngineSettings | None = None,
                  inline: Sequence[bool] | None = None) -> list[Fill]:
        """Fill the gaps between ``pieces`` jointly; ``lengths`` per gap, or None to choose.

        Fills join the text as ``joining.py`` says: ``inline`` (per gap; default: whether text follows the gap
        on its line) keeps a gap's fill within its line and non-empty, and every text is fitted to its sides.

        Unknown lengths (models with a null token), by ``settings.length_mode`` (None: the model's own):
        ``grow``: written in reading order with a few masked slots ahead, cut at the length with the
        best P(tokens) x P(the gap ends there) (cut.py); several gaps one after another from the left.
        ``hybrid`` (one gap): a marginal row and one row per ``short_lengths`` are denoised in
        one batch; the short fill with the best claim (P(tokens), times P(the gap ends after it) for
        models with ``diffill_end_check``: one extra pass) wins if its mean token probability reaches
        ``short_confidence`` (a short answer the model is sure of: the case where its length can
        be right at all), else the marginal row does; with one candidate wanted, rows that can no
        longer win stop early (``hybrid.ShortRace``); several gaps use ``marginal``.
        ``marginal``: each gap gets ``null_slots`` slots, the first pass reads its length off the
        null probabilities and the slots past it are null from then on; ``slots``: the padded slots
        are denoised and the unneeded ones end up null; ``probe``: a batched pass scores every
        candidate length first (also the fallback for models without a null token).
        Returns up to ``candidates`` fills, best first (after the first, by ``Fill.total``); ``Fill.texts`` holds
        one text per gap.
        """
        s = settings or self.settings
        n_gaps = len(pieces) - 1
        if n_gaps < 1:
            raise ValueError("nothing to fill: no gap between the pieces")
        inline = [stays_in_line(p) for p in pieces[1:]] if inline is None else list(inline)
        if len(inline) != n_gaps:
            raise ValueError(f"inline: one flag per gap ({n_gaps}), not {len(inline)}")
        mode = (s.length_mode or self.length_mode) if lengths is None else "given"
        if mode == "grow":
            return self._fill_grow(pieces, candidates, on_step, s, inline)
        if mode == "hybrid" and (n_gaps > 1 or self.null_id is None):
            mode = "marginal"
        with self._lock:
            passes = 0
            null_mode: str | list[str] = "exact"
            if mode == "hybrid":
                shorts = sorted({min(L, s.max_tokens) for L in s.short_lengths})
                plans = [[L] for L in shorts] + [[min(s.max_tokens, s.null_slots)]]
                null_mode = ["exact"] * len(shorts) + ["marginal"]
            elif mode in ("marginal", "slots") and self.null_id is not None:
                # Null-padded slots: the model leaves the unneeded ones null (no separate length pass).
                null_mode = "marginal" if mode == "marginal" else "open"
                plans = [[min(s.max_tokens, s.null_slots)] * n_gaps] * max(1, candidates)
            elif lengths is None:
                null_mode = "open"
                cands = [L for L in s.length_candidates if L <= s.max_tokens] or [s.max_tokens]
                choice = probe_lengths(self._forward, self.tokenizer, pieces, self._context(s, max(cands), n_gaps),
                                       cands, self.beta, round_up=self.null_id is not None)
                passes += 1
                plans = self._length_plans(choice.scores, choice.lengths, candidates)
            else:
                plans = [list(lengths)] * max(1, candidates)
            ctx = self._context(s, max(max(p) for p in plans), n_gaps)
            canvases = [build_canvas(self.tokenizer, pieces, p, ctx) for p in plans]
            ids, known = pad_rows([c.ids for c in canvases], [c.known for c in canvases], self.tokenizer.pad_token_id)
            cfg = self._sampler(s, max(max(p) for p in plans))
            if candidates > 1 and cfg.temperature == 0 and len({tuple(p) for p in plans}) < len(plans) \
                    and mode != "hybrid":
                cfg = replace(cfg, temperature=0.7, top_p=0.95)  # same lengths: variety must come from sampling
            gen = torch.Generator().manual_seed(s.seed)
            forward, settle, race = self._forward, None, None
            if any(inline):
                forward = self._within_lines(forward, canvases, inline, ids.shape)
            if self.null_id is not None:
                rules = NullRules(forward, [c.gaps for c in canvases], self.null_id,
                                  self.tokenizer.mask_token_id, null_mode,
                                  self.null_threshold if s.null_threshold is None else s.null_threshold)
                forward, settle = rules.forward, rules.settle
            bar = self.short_confidence if s.short_confidence is None else s.short_confidence
            ends, check = None, None
            if mode == "hybrid":
                if self.end_check:
                    check = end_check(self._forward, [c.gaps[0] for c in canvases], self.null_id,
                                      self.tokenizer.mask_token_id, self.tokenizer.pad_token_id)
                if candidates == 1:  # only the winner is wanted: stop rows that can no longer win
                    race = ShortRace([c.gaps[0] for c in canvases], bar, check)
            result = denoise(forward, ids, known, self.tokenizer.mask_token_id, cfg, on_step, gen, settle, race)
            passes += result.passes
            if check is not None:
                if race is not None and race.ends is not None:
                    ends, passes = race.ends, passes + race.passes
                else:
                    ends, passes = check(result.ids, list(range(len(canvases) - 1))), passes + 1
        fills: list[Fill | None] = []
        for row, canvas in enumerate(canvases):
            if bool(result.retired[row]):
                fills.append(None)  # stopped half-filled: it could not win
                continue
            texts, n_tok, logp = [], 0, []
            for g, ((a, b), anchor) in enumerate(zip(canvas.gaps, canvas.anchors)):
                text, n = self._text_of(result.ids[row, a:b].tolist(), anchor)
                texts.append(fit(pieces[g], text, pieces[g + 1]))
                n_tok += n
                logp += result.confidence[row, a:b].clamp_min(1e-9).log().tolist()
            score = sum(logp) / max(1, len(logp))
            fills.append(Fill(texts[0] if n_gaps == 1 else "".join(texts), score, n_tok, passes,
                              sum(b - a for a, b in canvas.gaps), texts))
        if mode == "hybrid":
            fills = rank(fills[:-1], ends, fills[-1], bar)
        else:
            fills.sort(key=lambda f: f.total, reverse=True)  # (rows of one length: the same order as the mean)
        unique: dict[tuple, Fill] = {}
        for f in fills:
            unique.setdefault(tuple(f.texts), f)
        return list(unique.values())[:max(1, candidates)]

    def _grow_row(self, pieces: list[str], s: EngineSettings, inline: bool, keep: int = 1,
                 on_step: Callable | None = None) -> tuple[Grown, Callable[[int], str]]:
        """The ``grow`` mode's row for the first gap of ``pieces`` (cut.py; later gaps are shown to the
        model as masked slots): its tokens, the claim of every length it scored (``keep``: how many
        lengths must stay scorable), and the fitted text of a cut at any length."""
        longest = min(s.max_tokens, s.null_slots)
        with self._lock:
            ctx = self._context(s, longest + GROW_WINDOW * (len(pieces) - 1), len(pieces) - 1)
            canvas = build_canvas(self.tokenizer, pieces, [1] + [GROW_WINDOW] * (len(pieces) - 2), ctx, ctx)
            (a, b), ids = canvas.gaps[0], canvas.ids
            control = set(self._control.tolist())
            ends = [i for i in (self.null_id, int(ids[b]) if b < len(ids) else None) if i is not None
                    and i not in control]                                  # null, the suffix's first token
            ban = None
            if inline:
                def ban(logits: torch.Tensor, filled: int) -> torch.Tensor:
                    first = torch.zeros(logits.shape[0], dtype=torch.bool)
                    first[0] = filled == 0
                    return logits.masked_fill(self._line_bans(logits.shape[-1], torch.ones_like(first), first),
                                              float("-inf"))
            sure = s.threshold if s.strategy == "diffusion" else None
            # the end tokens mean the end: a fill never writes them
            grown = grow(self._grow_forward(), ids[:a], ids[b:], self.tokenizer.mask_token_id, ends, ends, longest,
                         GROW_WINDOW, sure, ban, on_step, keep)

        def text_at(length: int) -> str:
            return fit(pieces[0], self._text_of(grown.tokens[:length], canvas.anchors[0])[0], pieces[1])
        return grown, text_at

    def _fill_grow(self, pieces: list[str], candidates: int, on_step, s: EngineSettings,
                   inline: Sequence[bool]) -> list[Fill]:
        """Gaps of unknown length by the ``grow`` mode, one after another from the left (each sees the
        fills before it); with one gap, the ``candidates`` best-claimed cuts."""
        keep = max(1, candidates) if len(pieces) == 2 else 1
        done, texts, passes, lengths, logps = pieces[0], [], 0, 0, []
        for g in range(len(pieces) - 1):
            grown, text_at = self._grow_row([done, *pieces[g + 1:]], s, inline[g], keep, on_step)
            fills, broken = [], []
            for length in grown.best(len(grown.claims)):
                text = text_at(length)
                # a cut inside a character's bytes (or before any text) is a last resort
                (broken if "\ufffd" in text or not text.strip() else fills).append((text, length))
            ranked = (fills + broken)[:keep]
            passes += grown.passes
            if len(pieces) == 2:
                return [Fill(text, sum(grown.logp[:L]) / L, L, passes, L, [text]) for text, L in ranked]
            text, length = ranked[0]
            texts.append(text)
            logps += grown.logp[:length]
            lengths += length
            done += text + pieces[g + 1]
        return [Fill("".join(texts), sum(logps) / max(1, len(logps)), lengths, passes, lengths, texts)]

    @staticmethod
    def _length_plans(scores: list[dict[int, float]], best: list[int], n: int) -> list[list[int]]:
        """The chosen lengths first, then the next-best lengths of the first gap for extra candidates."""
        plans = [best]
        ranked = sorted(scores[0], key=scores[0].get, reverse=True)
        for L in ranked:
            if len(plans) >= n:
                break
            if L != best[0]:
                plans.append([L] + best[1:])
        while len(plans) < n:
            plans.append(best)
        return plans

    def fill(self, prefix: str, suffix: str, length: int | None = None, candidates: int = 1,
             on_step: Callable | None = None, settings: EngineSettings | None = None,
             inline: bool | None = None) -> list[Fill]:
        """Fill one gap between ``prefix`` and ``suffix``; best candidate first (``inline``: see fill_gaps)."""
        return self.fill_gaps([prefix, suffix], None if length is None else [length], candidates, on_step, settings,
                              None if inline is None else [inline])

    def continue_text(self, prefix: str, length: int | None = None, **kw) -> list[Fill]:
        """Write on from the end of ``prefix`` (nothing after it)."""
        return self.fill(prefix, "", length, **kw)

    def bridge(self, above: str, below: str, length: int | None = None, settings: EngineSettings | None = None,
               **kw) -> list[Fill]:
        """Write a passage that leads from ``above`` into ``below`` (interpolation); longer gaps allowed."""
        s = settings or self.settings
        s = replace(s, max_tokens=max(s.max_tokens, 48), length_mode="probe", length_candidates=tuple(sorted(
            set(s.length_candidates) | {24, 32, 48})))
        return self.fill(above, below, length, settings=s, **kw)

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
            return Fill("", 0.0, 0, 0)
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
            cfg = self._sampler(s, n_remask)
            result = denoise(self._forward, ids[None], known[None], tok.mask_token_id, cfg, on_step,
                             torch.Generator().manual_seed(s.seed))
        text, n = self._text_of(result.ids[0, a:b].tolist(), canvas.anchors[0])
        text = fit(prefix, text, suffix)
        conf = result.confidence[0, a + worst].clamp_min(1e-9).log().mean().item()
        return Fill(text, conf, n, 1 + result.passes, len(body), [text])

    @torch.no_grad()
    def proofread(self, prefix: str, passage: str, suffix: str, below: float | None = None,
                  reading: str | None = None, on_step: Callable | None = None,
                  settings: EngineSettings | None = None) -> proofreading.Proofread:
        """The words of ``passage`` the model thinks are wrong, replaced (``proofread.py`` says how).

        ``below``: a word's probability under which it is questioned (default ``proofread.DEFAULT_BELOW``);
        ``reading``: ``masked`` (``proofread.DEFAULT_READING``) or ``visible``.
        """
        s = settings or self.settings
        below = proofreading.DEFAULT_BELOW if below is None else below
        reading = reading or proofreading.DEFAULT_READING
        if reading not in proofreading.READINGS:
            raise ValueError(f"unknown reading {reading!r}; choose one of {', '.join(proofreading.READINGS)}")
        pieces = proofreading.chunks(passage)
        texts = [passage[c.start:c.end] for c in pieces]              # each chunk as it now stands
        encode = lambda text: self.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
        token_ids = [encode(t) for t in texts]
        changes, passes = [], 0
        groups = proofreading.windows([len(t) for t in token_ids])
        for n, group in enumerate(groups):
            lo, hi = pieces[group[0]].start, pieces[group[-1]].end

            def read():  # the window as it now stands, its context with the changes made so far
                before = prefix + proofreading.apply(passage[:lo], changes)
                return self._word_reading(before, passage[hi:] + suffix, [token_ids[i] for i in group],
                                          [pieces[i].word for i in group], reading, s)
            (probs, guesses), passes = read(), passes + 1
            if on_step is not None:  # a long passage is many windows: progress (and cancellation) between them
                on_step(n + 1, len(groups), None)
            for k, i in enumerate(group):
                p, g = probs[k], guesses[k]
                if p is None or p >= below or not proofreading.differs(texts[i], self.tokenizer.decode(g)):
                    continue
                # Refill the word alone, every other word as it stands (with the changes made so far): at
                # most one token more than it had, kept on its line.
                at = pieces[i].word_start(passage)
                left = prefix + proofreading.apply(passage[:at], changes)
                slots = len(token_ids[i]) + 1
                fill = self.fill(left, passage[pieces[i].end:] + suffix, on_step=on_step, inline=True,
                                 settings=replace(s, max_tokens=slots, null_slots=slots))[0]
                passes += fill.passes
                new = proofreading.replacement(texts[i], fill.text)
                if new is None:
                    continue
                changes.append(proofreading.Change(at, pieces[i].end, passage[at:pieces[i].end], new, p))
                texts[i] = passage[pieces[i].start:at] + new
                token_ids[i] = encode(texts[i])
                # The words after it were judged beside the wrong one ("Teh museum": museum looked unlikely
                # next to Teh): read them again beside the correction.
                (probs, guesses), passes = read(), passes + 1
        return proofreading.Proofread(proofreading.apply(passage, changes), changes, passes)

    def _word_reading(self, before: str, after: str, chunk_ids: list[list[int]], is_word: list[bool], reading: str,
                      s: EngineSettings) -> tuple[list[float | None], list[list[int]]]:
        """Per chunk: the model's probability of its word (geometric mean over its tokens; None for a chunk
        that is not a word) and its own guess for those tokens, read as ``reading`` says, in one pass."""
        tok = self.tokenizer
        body = [t for ids in chunk_ids for t in ids]
        with self._lock:
            canvas = build_canvas(tok, [before, after], [len(body)], self._context(s, len(body), 1))
            a, _ = canvas.gaps[0]
            base = canvas.ids.clone()
            base[a:a + len(body)] = torch.tensor(body)
            spans, at = [], a
            for ids in chunk_ids:
                spans.append((at, at + len(ids)))
                at += len(ids)
            words = [k for k, w in enumerate(is_word) if w and spans[k][1] > spans[k][0]]
            groups = 1 if reading == "visible" else max(1, min(4, len(words)))
            rows = base.repeat(groups, 1)                                   # (G, T)
            positions = torch.zeros_like(rows, dtype=torch.bool)            # (G, T): where each word is read
            for n, k in enumerate(words):
                positions[n % groups, spans[k][0]:spans[k][1]] = True
            inputs = rows if reading == "visible" else rows.masked_fill(positions, tok.mask_token_id)
            logp = self._forward(inputs, positions).float().log_softmax(-1) if words else None  # (N, V)
        token_logp = torch.zeros(rows.shape)
        guess = rows.clone()
        if logp is not None:
            token_logp[positions] = logp.gather(-1, rows[positions][:, None]).squeeze(-1)
            guess[positions] = logp.argmax(-1)
        picked = torch.where(positions, guess, torch.zeros_like(guess)).sum(0)  # each slot is read in one row
        token_logp, guess = token_logp.sum(0), torch.where(positions.any(0), picked, base)  # (T,)
        probs: list[float | None] = [None] * len(chunk_ids)
        guesses = [list(ids) for ids in chunk_ids]
        for k in words:
            lo, hi = spans[k]
            probs[k] = float(token_logp[lo:hi].mean().exp())
            guesses[k] = guess[lo:hi].tolist()
        return probs, guesses
