"""The baseline a user would pick instead: the pretrained base as it is, writing left to right.

Causal attention, greedy decoding, left context only (the suffix is used only to choose where to
stop); the prompt and the written text are laid out and joined as the engine's are (spaces before the
gap belong to the fill, control tokens are never written, ``joining.fit`` at both ends).  With the length given it writes exactly that many tokens.  With the length unknown it
writes up to ``max_tokens`` and then cuts where the base itself finds the suffix most likely to
follow: one batched causal pass scores ``log p(suffix head | prefix + first k tokens)`` for every
k >= 1 and the best k wins.  Same canvas window, same decoding of the inserted text, same
``Fill`` as the diffusion engine, so ``diffill eval`` compares like with like.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion_core.infer.canvas import before_gap, decode_fill, frame_ids, special_ids, window_ids
from diffusion_core.infer.engine import EngineSettings, Fill
from diffusion_core.infer.joining import fit

SUFFIX_SCORED = 8  # suffix tokens whose likelihood picks the cut


class AutoregressiveBaseline:
    """``fill(prefix, suffix, length)`` with the base model's causal logits (``causal_logits``)."""

    def __init__(self, model, tokenizer, settings: EngineSettings | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or EngineSettings()
        self.start = frame_ids(tokenizer)[0]
        # Control tokens are never text (as in the engine); the document's end token ends the fill instead.
        self.control = torch.tensor([i for i in special_ids(tokenizer) if i != self.start], dtype=torch.long)

    @torch.no_grad()
    def fill(self, prefix: str, suffix: str, length: int | None = None, candidates: int = 1,
             on_step=None, settings: EngineSettings | None = None) -> list[Fill]:
        s = settings or self.settings
        left = [self.start] + window_ids(self.tokenizer, before_gap(prefix), s.context_tokens, "tail")  # as the canvas
        budget = length if length is not None else s.max_tokens
        ids, logps, passes = list(left), [], 0
        cache, step_in = self.model.new_cache(), list(left)
        for _ in range(budget):
            logits = self.model.causal_logits(torch.tensor([step_in]), cache=cache, last_only=True)[0].float()  # (V,)
            logits[self.control[self.control < logits.shape[-1]]] = float("-inf")
            if length is not None:  # a fixed length: never end the document early
                logits[self.start] = float("-inf")
            logp = F.log_softmax(logits, -1)
            token = int(logp.argmax())
            passes += 1
            if token == self.start:  # the base ended the document: nothing more to write
                break
            ids.append(token)
            logps.append(float(logp[token]))
            step_in = [token]
        written = ids[len(left):]
        if length is None and written:
            keep, more = self._best_cut(left, written, window_ids(self.tokenizer, suffix, SUFFIX_SCORED, "head"))
            written, logps, passes = written[:keep], logps[:keep], passes + more
        text = fit(prefix, decode_fill(self.tokenizer, left[-4:], written), suffix)
        score = sum(logps) / max(1, len(logps))
        return [Fill(text, score, len(written), passes, [text])]

    def _best_cut(self, left: list[int], written: list[int], suffix: list[int]) -> tuple[int, int]:
        """(k, passes): the k >= 1 for which the suffix head is most likely after ``left + written[:k]``."""
        if not suffix:
            return len(written), 0
        rows = [left + written[:k] + suffix for k in range(1, len(written) + 1)]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad)
        attention = torch.zeros(len(rows), width, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            attention[r, :len(row)] = 1
        logp = F.log_softmax(self.model.causal_logits(ids, attention).float(), -1)  # (K, T, V)
        totals = []
        for r, row in enumerate(rows):
            start = len(row) - len(suffix)               # first suffix token; predicted from start - 1
            targets = torch.tensor(suffix)
            totals.append(float(logp[r, start - 1:len(row) - 1].gather(1, targets[:, None]).sum()))
        return 1 + max(range(len(totals)), key=totals.__getitem__), 1


def load_baseline(name=None, threads: int | None = None, precision: str = "auto",
                  settings: EngineSettings | None = None) -> AutoregressiveBaseline:
    """The base that model ``name`` was adapted from, as pretrained (its delta is not applied)."""
    import json

    from diffusion_core.model.assemble import base_spec_of, load_base
    from diffusion_core.model.loading import LoadedModel, ModelLoadError, resolve_model_dir
    from diffusion_core.model.llama import NativeLlamaDenoiser
    from diffusion_core.model.precision import apply_precision, weights_dtype
    path = resolve_model_dir(name)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if not config.get("diffill_base"):
        raise ModelLoadError(f"{path} is not built on a pretrained causal base, so it has no autoregressive "
                             "baseline; use a model adapted with `diffill train --init smollm2`")
    model, tokenizer, _ = load_base(base_spec_of(config), fetch=False,
                                    dtype=weights_dtype(NativeLlamaDenoiser, precision))
    if threads:
        torch.set_num_threads(threads)
    model, used = apply_precision(model.eval(), precision)
    baseline = AutoregressiveBaseline(model, tokenizer, settings)
    baseline.loaded = LoadedModel(model, tokenizer, path, None, used)
    return baseline
