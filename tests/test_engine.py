from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion_core.canvas import build_canvas, decode_fill, window_ids
from diffusion_core.engine import STRATEGIES, EngineSettings, InfillEngine
from diffusion_core.lengths import median_length
from diffusion_core.null_rules import NullRules
from diffusion_core.sampler import Cancelled, SamplerConfig, denoise


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_fills_a_gap_with_the_expected_pass_count(engine, strategy):
    s = EngineSettings(strategy=strategy, threshold=None)
    fill = engine.fill("def add(a, b):\n    return ", "\n", length=6, settings=s)[0]
    assert fill.slots == 6
    expected = {"one-shot": 1, "left-to-right": 6, "diffusion": 3}[strategy]
    assert fill.passes == expected


def test_unknown_length_probe_costs_one_pass(engine):
    s = EngineSettings(strategy="one-shot", length_mode="probe")
    fill = engine.fill("The quick brown ", " over the lazy dog.", settings=s)[0]
    assert fill.passes == 2
    assert 1 <= fill.slots <= 32


def test_unknown_length_slots_mode_needs_no_probe(engine):
    s = EngineSettings(strategy="one-shot", length_mode="slots", null_slots=12)
    fill = engine.fill("The quick brown ", " over the lazy dog.", settings=s)[0]
    assert fill.passes == 1 and fill.slots == 12


def test_median_length_from_null_probabilities():
    assert median_length([0.9, 0.1, 0.2, 0.6, 0.9]) == 3      # slot 0 never counts
    assert median_length([0.0, 0.1, 0.7, 0.3, 0.9]) == 2      # non-monotone: running maximum
    assert median_length([0.0, 0.1, 0.2]) == 3                # never likely null: all slots
    assert median_length([0.0, 0.4, 0.45], threshold=0.4) == 1


def test_marginal_mode_decides_the_length_in_the_first_pass(tiny_loaded):
    """A head that says "null" from slot 3 on: the gap gets 3 tokens, and that costs no extra pass."""
    engine = InfillEngine(tiny_loaded)
    null, room = engine.null_id, 8
    canvas = build_canvas(engine.tokenizer, ["The quick ", " fox."], [room], 8)
    a, b = canvas.gaps[0]

    def forward(ids, positions):
        logits = torch.zeros(ids.shape + (len(engine.tokenizer),))       # (B, T, V)
        logits[:, :, 7] = 2.0
        logits[:, a + 3:b, null] = 9.0
        return logits[positions]
    rules = NullRules(forward, [canvas.gaps], null, engine.tokenizer.mask_token_id, "marginal")
    out = denoise(rules.forward, canvas.ids[None], canvas.known[None], engine.tokenizer.mask_token_id,
                  SamplerConfig(steps=4, min_commit=2), settle=rules.settle)
    assert rules.lengths == [[3]]
    assert out.ids[0, a:a + 3].tolist() == [7, 7, 7] and (out.ids[0, a + 3:b] == null).all()
    assert out.passes == 2                                            # ceil(3 / 2), as with the length given

def test_null_rules_keep_nulls_trailing(engine):
    """Open mode: after a committed null every slot is forced null; before a committed token null is banned."""
    canvas = build_canvas(engine.tokenizer, ["The quick ", " fox."], [6], 8)
    (a, b), null = canvas.gaps[0], engine.null_id
    ids = canvas.ids.clone()
    word = engine.tokenizer("brown", add_special_tokens=False).input_ids[0]
    ids[a + 2], ids[a + 4] = word, null          # slots: ? ? brown ? null ?
    masked = ids == engine.tokenizer.mask_token_id
    rules = NullRules(engine._forward, [canvas.gaps], null, engine.tokenizer.mask_token_id, "open")
    logits = rules.forward(ids[None], masked[None])                     # slots a, a+1, a+3, a+5
    by_slot = dict(zip(masked.nonzero().squeeze(-1).tolist(), logits))
    assert by_slot[a][null] == float("-inf") and by_slot[a + 1][null] == float("-inf")
    assert by_slot[a + 5].argmax() == null and by_slot[a + 5].softmax(-1)[null] == 1.0
    assert torch.isfinite(by_slot[a + 3][null])  # between the last token and the first null: free
    filled = rules.settle(ids[None], masked[None])
    assert filled[0].nonzero().squeeze(-1).tolist() == [a + 5] and ids[a + 5] == null

def test_joint_fill_returns_one_text_per_gap(engine):
    fills = engine.fill_gaps(["The ", " fox ", " over the ", "."], lengths=[2, 3, 1])
    assert len(fills[0].texts) == 3
    assert fills[0].slots == 6


def test_candidates_are_distinct_and_ranked(engine):
    fills = engine.fill("class Point:\n    def ", "(self):\n", candidates=4,
                        settings=EngineSettings(length_mode="marginal"))
    assert 1 <= len(fills) <= 4
    assert len({tuple(f.texts) for f in fills}) == len(fills)
    assert [f.score for f in fills] == sorted((f.score for f in fills), reverse=True)


def test_continue_bridge_and_rewrite_run(engine):
    assert engine.continue_text("Masked diffusion fills", length=4)[0].slots == 4
    assert engine.bridge("First paragraph.\n\n", "\n\nLast paragraph.")[0].slots >= 1
    out = engine.rewrite("Before. ", "The quick brown fox jumps over the lazy dog.", " After.", strength=0.3)
    assert out.passes >= 2 and isinstance(out.text, str)


def test_null_slots_are_dropped(tiny_loaded):
    # Bias the head towards the null token: every slot says "nothing here".
    bias = _head_bias(tiny_loaded)
    saved = bias.data.clone()
    try:
        bias.data[tiny_loaded.null_token_id] = 100.0
        engine = InfillEngine(tiny_loaded)
        fill = engine.fill("The quick ", " fox.", length=None, settings=EngineSettings(length_mode="marginal"))[0]
        assert fill.tokens == 1 and fill.passes == 1  # every slot but the first (never null) says null
        fill = engine.fill("The quick ", " fox.", length=None, settings=EngineSettings(length_mode="slots"))[0]
        assert fill.tokens == 1 and fill.slots >= 1  # all nulls but the first slot, which is never null
        assert fill.passes <= 2  # the committed nulls settle every later slot without more passes
        exact = engine.fill("The quick ", " fox.", length=5)[0]  # a given length rules nulls out
        assert exact.tokens == 5
    finally:
        bias.data.copy_(saved)


def test_cancellation_propagates_between_steps(engine):
    calls = []

    def stop(step, total, ids):
        calls.append(step)
        raise Cancelled()
    with pytest.raises(Cancelled):
        engine.fill("The quick ", " dog.", length=8, on_step=stop)
    assert calls == [1]


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="strategy"):
        EngineSettings(strategy="beam")
    with pytest.raises(ValueError, match="short_lengths"):
        EngineSettings(short_lengths=())
    with pytest.raises(ValueError, match="length mode"):
        EngineSettings(length_mode="guess")


def test_canvas_keeps_context_windows_and_gap_slots(tiny_loaded):
    tok = tiny_loaded.tokenizer
    canvas = build_canvas(tok, ["a " * 500, " b" * 500], [4], context_tokens=10)
    (s, e), = canvas.gaps
    assert e - s == 4 and len(canvas.ids) <= 2 + 10 + 4 + 10
    assert (canvas.ids[s:e] == tok.mask_token_id).all() and not canvas.known[s:e].any()


text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=text, suffix=text)
def test_known_text_round_trips_exactly(tiny_loaded, prefix, suffix):
    """Each side is tokenized alone, so its tokens decode back to exactly the same characters."""
    tok = tiny_loaded.tokenizer
    kw = dict(clean_up_tokenization_spaces=False)
    assert tok.decode(window_ids(tok, prefix, 10_000, "tail"), **kw) == prefix
    assert tok.decode(window_ids(tok, suffix, 10_000, "head"), **kw) == suffix


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=text, suffix=text)
def test_fill_is_only_the_inserted_text(tiny_loaded, prefix, suffix):
    engine = InfillEngine(tiny_loaded, EngineSettings(strategy="one-shot", max_tokens=4))
    fill = engine.fill(prefix, suffix)[0]
    tok = tiny_loaded.tokenizer
    ids = tok(fill.text, add_special_tokens=False).input_ids
    # byte-level BPE: the fill is a decodable string of at most the allocated slots' worth of tokens
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == fill.text
    assert fill.tokens <= fill.slots


def test_decode_fill_keeps_wordpiece_spacing():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s"])}
    wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=wp, mask_token="[MASK]", pad_token="[PAD]", unk_token="[UNK]")
    assert decode_fill(tok, [5, 6], [7]) == " sat"
    assert decode_fill(tok, [5, 6], [8]) == "s"


def _head_bias(loaded):
    head = loaded.model.cls.predictions
    return head.decoder.bias if head.decoder.bias is not None else head.bias


def test_hybrid_keeps_a_sure_short_fill(tiny_loaded):
    """A head sure of one token everywhere: the one-token row is as probable as a fill gets and wins."""
    word = tiny_loaded.tokenizer("fox", add_special_tokens=False).input_ids[0]
    bias = _head_bias(tiny_loaded)
    saved = bias.data.clone()
    try:
        bias.data[word] = 100.0
        engine = InfillEngine(tiny_loaded)
        fills = engine.fill("The quick ", " jumps.", candidates=3)
        assert fills[0].slots == 1 and fills[0].tokens == 1
        assert fills[0].text.strip() == engine.tokenizer.decode([word]).strip()
        assert len({f.text for f in fills}) == len(fills) >= 2  # the other rows are the alternatives
        assert any(f.slots == 16 for f in fills)  # the marginal row (16 null-padded slots) ran beside it
    finally:
        bias.data.copy_(saved)


def test_hybrid_falls_back_to_the_marginal_row_when_unsure(tiny_loaded):
    """A random model is sure of nothing (token probabilities ~1/vocab): the null-padded row decides."""
    engine = InfillEngine(tiny_loaded)
    fill = engine.fill("The quick ", " jumps.", settings=EngineSettings(null_slots=12))[0]
    assert fill.slots == 12
    sure = engine.fill("The quick ", " jumps.", settings=EngineSettings(null_slots=12, short_confidence=0.0))[0]
    assert sure.slots <= 3  # with no bar the most probable short fill always wins


def test_hybrid_with_several_gaps_uses_the_null_slots(engine):
    fills = engine.fill_gaps(["The ", " fox ", "."], settings=EngineSettings(null_slots=6))
    assert len(fills[0].texts) == 2 and fills[0].slots == 12


def test_finished_rows_cost_no_compute(engine):
    """The forward drops rows with nothing to predict; the other rows' logits do not change."""
    canvas = build_canvas(engine.tokenizer, ["The quick ", " fox."], [3], 8)
    ids = torch.stack([canvas.ids, canvas.ids])                          # (2, T)
    positions = torch.stack([~canvas.known, torch.zeros_like(canvas.known)])
    both = engine._forward(ids, positions)
    alone = engine._forward(ids[:1], positions[:1])
    assert both.shape == alone.shape == (3, len(engine.tokenizer))
    assert torch.allclose(both, alone)


def test_short_race_picks_the_sure_leader_and_stops_the_rest():
    """Rows 0..2 hold 1-, 2- and 3-slot gaps at columns 1.., row 3 the marginal one."""
    from diffusion_core.hybrid import ShortRace
    spans = [(1, 2), (1, 3), (1, 4), (1, 9)]
    race = ShortRace(spans, bar=0.3)
    ids = torch.zeros(4, 10, dtype=torch.long)
    masked = torch.zeros(4, 10, dtype=torch.bool)
    conf = torch.ones(4, 10)
    conf[0, 1] = 0.9                                   # the one-token row is finished and sure
    masked[1, 2] = True
    conf[1, 1] = 0.5                                   # bound log 0.5 < log 0.9: cannot win any more
    masked[2, 2:4] = True
    conf[2, 1] = 0.95                                  # bound log 0.95 > log 0.9: may still win
    masked[3, 2:9] = True
    assert race(ids, masked, conf).tolist() == [False, True, False, False]
    conf[2, 1] = 0.6                                   # now every rival is beaten: the short fill has won
    assert race(ids, masked, conf).tolist() == [False, True, True, True]
    conf[0, 1] = 0.2                                   # ... unless it is below the bar: the marginal row goes on
    conf[1, 1] = conf[2, 1] = 0.1
    assert race(ids, masked, conf).tolist() == [False, True, True, False]


def test_short_race_waits_for_every_short_row_then_weighs_where_each_ends():
    """Rows 0..2 hold 1-, 2- and 3-slot gaps at columns 1.., row 3 the marginal one."""
    import math

    from diffusion_core.hybrid import ShortRace
    spans = [(1, 2), (1, 3), (1, 4), (1, 9)]
    calls = []

    def ends(ids, rows):                               # the 3-token fill is where the gap ends
        calls.append(rows)
        return [math.log(0.01), math.log(0.01), math.log(0.9)]
    race = ShortRace(spans, bar=0.3, end_logp=ends)
    ids = torch.zeros(4, 10, dtype=torch.long)
    masked = torch.zeros(4, 10, dtype=torch.bool)
    conf = torch.ones(4, 10)
    masked[2, 3] = True                                # the 3-slot row is not filled yet: nothing to decide
    masked[3, 2:9] = True
    assert race(ids, masked, conf).tolist() == [False] * 4 and not calls
    masked[2, 3] = False
    conf[0, 1] = 0.9                                   # the 1-token fill is the most probable ...
    conf[2, 1:4] = 0.8                                 # ... but the 3-token one ends the gap: it wins
    assert race(ids, masked, conf).tolist() == [False, False, False, True]
    assert calls == [[0, 1, 2]] and race.passes == 1
    assert race(ids, masked, conf).tolist() == [False] * 4 and race.passes == 1  # checked once


def test_short_race_lets_the_marginal_row_go_on_when_the_winner_is_unsure():
    from diffusion_core.hybrid import ShortRace
    spans = [(1, 2), (1, 9)]
    race = ShortRace(spans, bar=0.3, end_logp=lambda ids, rows: [0.0])
    masked = torch.zeros(2, 10, dtype=torch.bool)
    masked[1, 2:9] = True
    conf = torch.ones(2, 10)
    conf[0, 1] = 0.2
    assert race(torch.zeros(2, 10, dtype=torch.long), masked, conf).tolist() == [False, False]


def test_end_check_reads_null_plus_the_text_after_the_gap(engine):
    """The probe slot sits right after the gap; P(end) = P(null) + P(first token after the gap)."""
    from diffusion_core.hybrid import end_check
    tok = engine.tokenizer
    canvas = build_canvas(tok, ["The quick ", " fox."], [2], 8)
    a, b = canvas.gaps[0]
    ids = canvas.ids.clone()[None]
    ids[0, a:b] = torch.tensor(tok("brown dog", add_special_tokens=False).input_ids[:2])
    seen = {}

    def forward(probe, slot):
        seen["probe"], seen["slot"] = probe.clone(), slot.clone()
        logits = torch.full((int(slot.sum()), len(tok)), -30.0)
        logits[:, engine.null_id] = 0.0
        logits[:, int(ids[0, b])] = 0.0                 # the suffix's first token: as likely as null
        return logits
    (logp,) = end_check(forward, [(a, b)], engine.null_id, tok.mask_token_id, tok.pad_token_id)(ids, [0])
    assert abs(logp) < 1e-3                            # the two together hold all the probability
    probe = seen["probe"][0]
    assert probe[b] == tok.mask_token_id and seen["slot"][0].nonzero().tolist() == [[b]]
    assert torch.equal(probe[:b], ids[0, :b]) and torch.equal(probe[b + 1:], ids[0, b:])


@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize("bias", [0.0, 8.0, 100.0])
def test_the_race_returns_the_full_runs_winner(tiny_loaded, bias, end):
    """Unsure (random head), fairly sure and certain of one token, with and without the end check: the race
    changes the cost, not the answer."""
    word = tiny_loaded.tokenizer("fox", add_special_tokens=False).input_ids[0]
    head = _head_bias(tiny_loaded)
    saved = head.data.clone()
    try:
        head.data[word] += bias
        engine = InfillEngine(tiny_loaded, EngineSettings(threshold=None))
        engine.end_check = end
        raced = engine.fill("The quick ", " jumps over it.")[0]               # one candidate: the race runs
        full = engine.fill("The quick ", " jumps over it.", candidates=4)[0]  # alternatives wanted: no race
        assert (raced.text, raced.slots, raced.score) == (full.text, full.slots, full.score)
        assert raced.passes <= full.passes
        if bias == 8.0:
            assert raced.passes < full.passes   # a sure short fill stops the 16-slot row early
    finally:
        head.data.copy_(saved)


def test_spaces_before_a_gap_go_into_the_gap(tiny_loaded):
    """Training cuts gaps at word starts, so the model must never see a prefix ending in a bare space token."""
    from diffusion_core.canvas import build_canvas
    tok = tiny_loaded.tokenizer
    spaced = build_canvas(tok, ["The quick brown fox ", " over the lazy dog."], [2], 48)
    plain = build_canvas(tok, ["The quick brown fox", " over the lazy dog."], [2], 48)
    assert spaced.ids.tolist() == plain.ids.tolist()
    tabbed = build_canvas(tok, ["def add(a, b):\n    return\t", "\n"], [2], 48)
    assert tabbed.ids.tolist() == build_canvas(tok, ["def add(a, b):\n    return", "\n"], [2], 48).ids.tolist()


def test_control_tokens_are_never_written(engine):
    from diffusion_core.canvas import special_ids
    tok = engine.tokenizer
    control = [i for i in special_ids(tok) if i != engine.null_id]
    assert {tok.mask_token_id, tok.pad_token_id, tok.cls_token_id, tok.sep_token_id} <= set(control)
    ids = torch.tensor([[tok.cls_token_id] + [tok.mask_token_id] * 4 + [tok.sep_token_id]])
    positions = ids == tok.mask_token_id
    logits = engine._forward(ids, positions)
    assert torch.isinf(logits[:, control]).all() and torch.isfinite(logits.max(-1).values).all()
    names = {tok.convert_ids_to_tokens([i])[0] for i in control}
    for prefix in ("The quick brown", "def f(x):\n    return", "Hello", ""):
        for fill in engine.fill(prefix, " and then", candidates=3):
            assert not any(n in fill.text for n in names), fill.text


def _scripted(table):
    """A forward whose next-token odds depend only on how many tokens precede the window (cut.grow's
    contract: the window's slots are the True positions). ``table[n]`` gives per slot a dict id -> prob."""
    def forward(ids, positions):
        start = int(positions[0].nonzero()[0])
        n = start - 2                                   # the canvas is [before (2 ids)] + fill + window + after
        rows = []
        for k in range(int(positions.sum())):
            probs = torch.full((6,), 1e-6)
            for i, p in table(n, k).items():
                probs[i] = p
            rows.append(probs.log())
        return torch.stack(rows)
    return forward


NULL, AFTER = 5, 4                                      # ids of the null token and of the text after the gap


def test_grow_stops_where_the_gap_ends():
    """Two sure tokens, then the text after the gap is what comes: the fill is those two, found early."""
    from diffusion_core.cut import grow

    def table(n, k):
        return {1: 0.9, AFTER: 0.05} if n + k < 2 else {AFTER: 0.8, 2: 0.15}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER, 0]), 9, [NULL, AFTER], [NULL], 12)
    assert grown.tokens[:2] == [1, 1] and grown.best() == [2]
    # the pass after two tokens scores ending there; the token it commits costs more than ending: done
    assert grown.passes == 3 and set(grown.claims) == {1, 2}


def test_grow_never_writes_the_null_and_reads_it_as_an_end():
    from diffusion_core.cut import grow

    def table(n, k):
        return {NULL: 0.7, 2: 0.2, 3: 0.1}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([0]), 9, [NULL], [NULL], 8)
    assert NULL not in grown.tokens and grown.best() == [1]


def test_grow_commits_sure_slots_in_parallel_and_scores_only_lengths_it_read():
    from diffusion_core.cut import grow

    def table(n, k):
        return {1: 0.95, AFTER: 0.04}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER]), 9, [NULL, AFTER], [NULL], 6,
                 window=3, threshold=0.9)
    assert grown.tokens == [1] * 6
    assert grown.passes == 3                            # 3 + 3 tokens, then one pass reads the end after 6
    assert set(grown.claims) == {3, 6}                  # lengths 1, 2, 4, 5 were committed beside the next slot


def test_grow_mode_fills_one_gap_within_its_line(engine):
    s = EngineSettings(length_mode="grow")
    fills = engine.fill("x = ", "\nprint(x)", candidates=3, settings=s)
    assert 1 <= len(fills) <= 3 and all("\n" not in f.text for f in fills)  # (a random model writes byte soup)
    assert all(1 <= f.tokens <= s.null_slots for f in fills)
    assert len({f.slots for f in fills}) == len(fills)  # the candidates are different cuts
    two = engine.fill_gaps(["The ", " fox ", "."], settings=replace(s, null_slots=6))  # several gaps: null slots
    assert len(two[0].texts) == 2


def test_the_model_chooses_its_length_mode_and_a_bad_choice_is_a_clear_error(tiny_loaded):
    config = tiny_loaded.model.config
    try:
        config.diffill_length_mode = "grow"
        engine = InfillEngine(tiny_loaded)
        assert engine.length_mode == "grow"
        fill = engine.fill("The quick ", " jumps.", candidates=2)
        assert len({f.slots for f in fill}) == len(fill)                 # grow's cuts, not hybrid's rows
        assert engine.fill("The quick ", " jumps.", settings=EngineSettings(length_mode="hybrid"))[0].slots in (1, 2, 3, 16)
        config.diffill_length_mode = "guess"
        with pytest.raises(ValueError, match="diffill_length_mode 'guess'"):
            InfillEngine(tiny_loaded)
    finally:
        del config.diffill_length_mode


def test_grow_continues_text_with_nothing_after_it(engine):
    """No suffix: only the null token can say the text ends; the fill still stops within its bound."""
    s = EngineSettings(length_mode="grow", null_slots=5)
    fill = engine.continue_text("Masked diffusion fills", settings=s)[0]
    assert 1 <= fill.slots <= 5 and fill.passes <= 6
