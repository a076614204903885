"""Proofreading's scoring on a masked LM: the noisy channel of proofread.py, read off the model.

The engine's ``proofread`` job holds the model's lock and calls ``Proofreader.proofread``; this module only
sees the model as ``forward(ids (B, T), positions (B, T) bool) -> logits (N, V)`` at the ``positions``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_core.infer import channel
from diffusion_core.infer.canvas import build_canvas
from diffusion_core.infer.proofread import Change, Proofread, apply, chunks, windows

EXACT_CONTEXT = 16  # tokens of context each side when a text of several tokens is scored exactly (8: experiments.md)


@dataclass
class Proofreader:
    """One proofreading job's view of the model."""
    tokenizer: object
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # logits (N, V) at the positions
    context: Callable[[int], int]   # tokens of context on each side of a window of that many tokens
    exact_context: int = EXACT_CONTEXT  # the same for the exact (chain-rule) scoring
    passes: int = 0                 # forward passes so far

    def read(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) at the ``positions`` (B, T) of ``ids`` (B, T): one forward pass."""
        self.passes += 1
        return self.forward(ids, positions).float().log_softmax(-1)

    def proofread(self, prefix: str, passage: str, suffix: str, margin: float,
                  on_step: Callable | None = None) -> Proofread:
        """The words of ``passage`` a writer more likely meant otherwise, replaced (``proofread.py`` says how);
        a correction must beat the word by ``margin`` nats.  ``on_step(window, windows, None)`` after each
        window (it may raise to cancel)."""
        pieces = chunks(passage)
        texts = [passage[c.start:c.end] for c in pieces]              # each chunk as it now stands
        token_ids = [self.encode(t) for t in texts]
        document = channel.document_words(prefix + passage + suffix)
        changes = []
        groups = windows([len(t) for t in token_ids])
        for n, group in enumerate(groups):
            lo, hi = pieces[group[0]].start, pieces[group[-1]].end

            def judge(judged: list[int]) -> dict[int, tuple[str, float]]:
                before = prefix + apply(passage[:lo], [c for c in changes if c.end <= lo])
                return self.judge(before, passage[hi:] + suffix, [texts[i] for i in group],
                                   [token_ids[i] for i in group], judged, document, margin)
            judged = [k for k, i in enumerate(group) if pieces[i].word and channel.checked(texts[i].lstrip())]
            verdicts = judge(judged)
            if on_step is not None:  # a long passage is many windows: progress (and cancellation) between them
                on_step(n + 1, len(groups), None)
            for k, i in enumerate(group):
                if k not in verdicts or verdicts[k][1] <= margin:
                    continue
                new, gain = verdicts[k]
                at = pieces[i].word_start(passage)
                changes.append(Change(at, pieces[i].end, passage[at:pieces[i].end], new, gain))
                texts[i] = passage[pieces[i].start:at] + new
                token_ids[i] = self.encode(texts[i])
                # The next words were judged beside the wrong one: the two after it that would change are
                # judged again beside the correction.
                after = [j for j in judged if j > k][:2]
                doubtful = [j for j in after if j in verdicts and verdicts[j][1] > margin]
                if doubtful:
                    for j in doubtful:
                        verdicts.pop(j)
                    verdicts.update(judge(doubtful))
        return Proofread(apply(passage, changes), changes, self.passes)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def judge(self, before: str, after: str, texts: list[str], chunk_ids: list[list[int]], judged: list[int],
              document: dict[str, str], margin: float) -> dict[int, tuple[str, float]]:
        """For each chunk of a window ``judged`` that has a candidate: (its best correction, the correction's
        score minus the word's), the words hidden in one batched pass and the words or candidates of several
        tokens scored exactly in more (``chain_scores``)."""
        slots = self.hidden_reading(before, after, chunk_ids, judged)
        verdicts, exact = {}, []
        for k, logp in slots.items():
            space, word = texts[k][:len(texts[k]) - len(texts[k].lstrip())], texts[k].lstrip()
            if not channel.checked(word):
                continue
            options = self.options(space, word, logp, document)
            if not options:
                continue
            # A candidate that differs from the word in its one word slot is read off the hidden reading (exact
            # for a word of one token beside blank ones: "\nWord"); the others are scored exactly below (read
            # hidden, the slots of " Kier|ke|gard" are each guessed without the others).
            own, ids = chunk_ids[k], {c: self.encode(space + c) for c in options}
            wordy = [j for j, t in enumerate(own) if self.tokenizer.decode([t]).strip()]
            slot = {c: _one_slot(own, i) if len(wordy) == 1 else None for c, i in ids.items()}
            scores = {c: logp[j, ids[c][j]].item() - logp[j, own[j]].item() for c, j in slot.items() if j is not None}
            # No candidate can beat a word already likelier than e^-(cheapest slip + margin): those are not scored
            # exactly (read hidden, slot by slot, a word of several tokens looks no likelier than it is).
            likely = logp.gather(-1, torch.tensor(own)[:, None]).sum().item() > _bar(margin)
            rest = [] if likely else [c for c in options if slot[c] is None][:channel.MAX_EXACT]
            if rest:
                exact.append((k, space, word, rest, scores))
            elif scores:
                verdicts[k] = _best(word, scores)
        verdicts.update(self.exact_verdicts(before, after, texts, exact, margin))
        return {k: v for k, v in verdicts.items() if v is not None}

    def options(self, space: str, word: str, logp: torch.Tensor, document: dict[str, str]) -> list[str]:
        """What ``word`` (its slots read hidden: ``logp`` (its tokens, V)) may stand for: the lexicon's and the
        document's words one edit away, then the model's own guesses within ``GUESS_EDITS`` edits."""
        options = channel.candidates(word, channel.lexicon(), document)
        guesses = [channel.cased(g, word) for g in self.guesses(space, logp) if channel.checked(g)]
        return options + [g for g in guesses if g not in options and g.lower() != word.lower()  # words, not case
                          and channel.edits(word, g) <= channel.GUESS_EDITS]

    def exact_verdicts(self, before: str, after: str, texts: list[str], exact: list[tuple], margin: float) -> dict:
        """``judge``'s verdicts for the words ``exact`` holds, (chunk, space, word, candidates, one-slot scores)
        each, their candidates of several tokens scored exactly."""
        verdicts = {}
        # Exactly: each word first (one pass), then, a pass per token, the candidates of the words still unlikely
        # enough for one to win (log P(c) <= 0, so a word likelier than e^-(cheapest slip + margin) keeps its place).
        contexts = {k: ("".join([before, *texts[:k]]), "".join([*texts[k + 1:], after])) for k, *_ in exact}
        owns = self.chain_scores([(*contexts[k], space + word) for k, space, word, _, _ in exact])
        doubtful = [(e, own) for e, own in zip(exact, owns) if own <= _bar(margin)]
        # A candidate is read token by token, and no further once it cannot beat the word by the margin.
        candidates = [(k, space, word, c, own) for (k, space, word, options, _), own in doubtful for c in options]
        floors = [own + channel.cost(word, c) + margin for _, _, word, c, own in candidates]
        chain = iter(self.chain_scores([(*contexts[k], space + c) for k, space, _, c, _ in candidates], floors))
        for (k, space, word, options, scores), own in doubtful:
            verdicts[k] = _best(word, {**scores, **{c: next(chain) - own for c in options}})
        return verdicts

    def guesses(self, space: str, logp: torch.Tensor, width: int = 4) -> list[str]:
        """The model's own words for a hidden chunk: a short beam over its slots (read independently), every
        length up to the chunk's, and the top single tokens."""
        beam = [([], 0.0)]
        found = []
        for j in range(logp.shape[0]):
            top = logp[j].topk(width)
            beam = sorted(((ids + [t], score + v) for ids, score in beam
                           for v, t in zip(top.values.tolist(), top.indices.tolist())), key=lambda b: -b[1])[:width]
            found += [ids for ids, _ in beam]
        out = []
        for ids in found:
            text = self.tokenizer.decode(ids)
            if text.startswith(space) and text[len(space):] and text[len(space):] not in out:
                out.append(text[len(space):])
        return out

    def hidden_reading(self, before: str, after: str, chunk_ids: list[list[int]],
                       judged: list[int]) -> dict[int, torch.Tensor]:
        """Per judged chunk: the log-probabilities (its tokens, V) at its slots with it hidden, in one batched
        pass (every fourth judged chunk hidden in each of four rows)."""
        tok = self.tokenizer
        body = [t for ids in chunk_ids for t in ids]
        judged = [k for k in judged if chunk_ids[k]]
        if not judged:
            return {}
        canvas = build_canvas(tok, [before, after], [len(body)], self.context(len(body)))
        a, _ = canvas.gaps[0]
        base = canvas.ids.clone()
        base[a:a + len(body)] = torch.tensor(body)
        spans, at = [], a
        for ids in chunk_ids:
            spans.append((at, at + len(ids)))
            at += len(ids)
        groups = min(4, len(judged))
        rows = base.repeat(groups, 1)                                   # (G, T)
        positions = torch.zeros_like(rows, dtype=torch.bool)            # (G, T): where each chunk is hidden
        for n, k in enumerate(judged):
            positions[n % groups, spans[k][0]:spans[k][1]] = True
        logp = self.read(rows.masked_fill(positions, tok.mask_token_id), positions)       # (hidden slots, V)
        at_row = {}                                                     # row-major order of the hidden slots
        for n, (g, t) in enumerate(positions.nonzero().tolist()):
            at_row[(g, t)] = n
        return {k: logp[[at_row[(n % groups, t)] for t in range(*spans[k])]] for n, k in enumerate(judged)}

    def chain_scores(self, rows: list[tuple[str, str, str]], floors: list[float] | None = None) -> list[float]:
        """log P(text | left, right) for each (left, right, text): the chain rule over the text's tokens, the
        text's slots hidden from the token scored on, one row per token.  Texts of as many tokens in one context
        share the rows of their common first tokens (every one-token candidate of a word is read off one row).

        Without ``floors`` every row is read in one batched pass.  With them (one per text), token j of every
        text is read in pass j, and a text whose score so far is at or below its floor is read no further (each
        token only lowers it): its score is then that upper bound, still at or below the floor."""
        tokens = [self.encode(text) for _, _, text in rows]
        scores = [0.0] * len(rows)
        canvases: dict[tuple[str, str, int], object] = {}
        if floors is None:
            self._read_tokens(rows, tokens, [(n, j) for n, t in enumerate(tokens) for j in range(len(t))],
                              scores, canvases)
            return scores
        alive = list(range(len(rows)))
        for j in range(max(map(len, tokens), default=0)):
            alive = [n for n in alive if j < len(tokens[n]) and (j == 0 or scores[n] > floors[n])]
            self._read_tokens(rows, tokens, [(n, j) for n in alive], scores, canvases)
        return scores

    def _read_tokens(self, rows: list[tuple[str, str, str]], tokens: list[list[int]], reads: list[tuple[int, int]],
                     scores: list[float], canvases: dict, batch: int = 64) -> None:
        """Add to ``scores[n]`` log p(token j of text n | its first j tokens, the rest hidden) for each (n, j) of
        ``reads``, in one batched pass (a row per distinct context and prefix)."""
        tok = self.tokenizer
        unique, ids, where, targets = {}, [], [], []      # targets: (row, target token, which text)
        for n, j in reads:
            left, right, _ = rows[n]
            t = tokens[n]
            key = (left, right, len(t), tuple(t[:j]))
            if key not in unique:
                if (left, right, len(t)) not in canvases:
                    canvases[left, right, len(t)] = build_canvas(tok, [left, right], [len(t)], self.exact_context)
                canvas = canvases[left, right, len(t)]
                row = canvas.ids.clone()                                  # (T,)
                row[canvas.gaps[0][0]:canvas.gaps[0][0] + j] = torch.tensor(t[:j], dtype=row.dtype)
                unique[key] = len(ids)
                ids.append(row)
                where.append(canvas.gaps[0][0] + j)
            targets.append((unique[key], t[j], n))
        if not targets:
            return
        logps = []
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.mask_token_id
        for lo in range(0, len(ids), batch):
            chunk = ids[lo:lo + batch]
            grid = torch.full((len(chunk), max(len(r) for r in chunk)), pad, dtype=torch.long)   # (B, T)
            positions = torch.zeros_like(grid, dtype=torch.bool)                                # (B, T)
            for r, row in enumerate(chunk):
                grid[r, :len(row)] = row
                positions[r, where[lo + r]] = True
            logps.append(self.read(grid, positions))                                            # (B, V)
        logp = torch.cat(logps)                                                                 # (rows, V)
        got = logp[[r for r, _, _ in targets], [t for _, t, _ in targets]].tolist()
        for (_, _, n), v in zip(targets, got):
            scores[n] += v


def _one_slot(own: list[int], ids: list[int]) -> int | None:
    """The one slot where ``ids`` differs from ``own`` (same length), else None."""
    if len(ids) != len(own):
        return None
    differ = [j for j, (a, b) in enumerate(zip(own, ids)) if a != b]
    return differ[0] if len(differ) == 1 else None


def _bar(margin: float) -> float:
    """log P of a word above which no candidate can beat it: the cheapest slip plus the margin."""
    return -(min(channel.COSTS.values()) + margin)


def _best(word: str, scores: dict[str, float]) -> tuple[str, float] | None:
    """(the candidate that best explains ``word``, by how much it beats the word itself), or None; ``scores``:
    each candidate's log-probability against the word's."""
    if not scores:
        return None
    gains = {c: v - channel.cost(word, c) for c, v in scores.items()}
    best = max(gains, key=gains.get)
    return best, gains[best]

