from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion_core.infer.canvas import build_canvas, decode_fill, window_ids
from diffusion_core.infer.engine import STRATEGIES, EngineSettings, InfillEngine
from diffusion_core.infer.sampler import Cancelled


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_fills_a_gap_with_the_expected_pass_count(engine, strategy):
    s = EngineSettings(strategy=strategy, threshold=None)
    fill = engine.fill("def add(a, b):\n    return ", "\n", length=6, settings=s)[0]
    assert fill.tokens == 6
    expected = {"one-shot": 1, "left-to-right": 6, "diffusion": 3}[strategy]
    assert fill.passes == expected


def test_joint_fill_returns_one_text_per_gap(engine):
    fills = engine.fill_gaps(["The ", " fox ", " over the ", "."], lengths=[2, 3, 1])
    assert len(fills[0].texts) == 3
    assert fills[0].tokens == 6


def test_candidates_are_distinct_and_ranked(engine):
    fills = engine.fill("class Point:\n    def ", "(self):\n", candidates=4)
    assert 1 <= len(fills) <= 4
    assert len({f.text for f in fills}) == len(fills)


def test_continue_bridge_and_rewrite_run(engine):
    assert engine.continue_text("Masked diffusion fills", length=4)[0].tokens == 4
    bridge = engine.bridge("First paragraph.\n\n", "\n\nLast paragraph.")[0]
    assert bridge.tokens >= 1 and bridge.text.strip()
    out = engine.rewrite("Before. ", "The quick brown fox jumps over the lazy dog.", " After.", strength=0.3)
    assert out.passes >= 2 and out.text.strip() and out.text != "The quick brown fox jumps over the lazy dog."


def test_a_given_length_never_writes_the_null(tiny_loaded):
    """A head that says "nothing here" everywhere: a given length still gets that many real tokens, and
    grow reads the null as the gap's end right after the first token (a fill is never empty)."""
    bias = _head_bias(tiny_loaded)
    saved = bias.data.clone()
    try:
        bias.data[tiny_loaded.null_token_id] = 100.0
        engine = InfillEngine(tiny_loaded)
        exact = engine.fill("The quick ", " fox.", length=5)[0]
        assert exact.tokens == 5 and "<null>" not in exact.text
        grown = engine.fill("The quick ", " fox.")[0]
        assert grown.tokens == 1 and grown.passes == 2 and grown.text.strip()
    finally:
        bias.data.copy_(saved)


def test_a_word_never_follows_itself(tiny_loaded):
    """Seen on held-out code: ``def def self``.  A head that prefers one word everywhere writes it once, not
    again right after itself, nor right after the same word before the gap."""
    tok = tiny_loaded.tokenizer
    word = tok(" gap", add_special_tokens=False).input_ids
    assert len(word) == 1
    bias = _head_bias(tiny_loaded)
    saved = bias.data.clone()
    try:
        bias.data[word[0]] = 60.0
        engine = InfillEngine(tiny_loaded, EngineSettings(max_tokens=6))
        for prefix in ("Fill the", "Fill the gap"):
            for fill in engine.fill(prefix, " in the middle of text.", candidates=3):
                ids = tok(prefix + fill.text, add_special_tokens=False).input_ids
                assert all(a != b for a, b in zip(ids, ids[1:]) if a == word[0]), (prefix, fill.text)
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
    with pytest.raises(ValueError, match="max_tokens"):
        EngineSettings(max_tokens=0)
    with pytest.raises(ValueError, match="steps"):
        EngineSettings(steps=0)


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
    assert 1 <= fill.tokens <= 4


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


def test_spaces_before_a_gap_go_into_the_gap(tiny_loaded):
    """Training cuts gaps at word starts, so the model must never see a prefix ending in a bare space token."""
    from diffusion_core.infer.canvas import build_canvas
    tok = tiny_loaded.tokenizer
    spaced = build_canvas(tok, ["The quick brown fox ", " over the lazy dog."], [2], 48)
    plain = build_canvas(tok, ["The quick brown fox", " over the lazy dog."], [2], 48)
    assert spaced.ids.tolist() == plain.ids.tolist()
    tabbed = build_canvas(tok, ["def add(a, b):\n    return\t", "\n"], [2], 48)
    assert tabbed.ids.tolist() == build_canvas(tok, ["def add(a, b):\n    return", "\n"], [2], 48).ids.tolist()


def test_control_tokens_are_never_written(engine):
    from diffusion_core.infer.canvas import special_ids
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
    """A forward whose next-token odds depend only on how many tokens precede the window (grow.grow's
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
    from diffusion_core.infer.grow import grow

    def table(n, k):
        return {1: 0.9, AFTER: 0.05} if n + k < 2 else {AFTER: 0.8, 2: 0.15}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER, 0]), 9, [NULL, AFTER], [NULL], 12)
    assert grown.tokens[:2] == [1, 1] and grown.best() == [2]
    # the pass after two tokens scores ending there; the token it commits costs more than ending: done
    assert grown.passes == 3 and set(grown.claims) == {1, 2}


def test_grow_never_writes_the_null_and_reads_it_as_an_end():
    from diffusion_core.infer.grow import grow

    def table(n, k):
        return {NULL: 0.7, 2: 0.2, 3: 0.1}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([0]), 9, [NULL], [NULL], 8)
    assert NULL not in grown.tokens and grown.best() == [1]


def test_grow_commits_sure_slots_in_parallel_and_scores_only_lengths_it_read():
    from diffusion_core.infer.grow import grow

    def table(n, k):
        return {1: 0.95, AFTER: 0.04}
    grown = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER]), 9, [NULL, AFTER], [NULL], 6,
                 window=3, threshold=0.9)
    assert grown.tokens == [1] * 6
    assert grown.passes == 3                            # 3 + 3 tokens, then one pass reads the end after 6
    assert set(grown.claims) == {3, 6}                  # lengths 1, 2, 4, 5 were committed beside the next slot


def test_grow_fills_one_gap_within_its_line(engine):
    fills = engine.fill("x = ", "\nprint(x)", candidates=3)
    assert 1 <= len(fills) <= 3 and all("\n" not in f.text for f in fills)  # (a random model writes byte soup)
    assert all(1 <= f.tokens <= engine.settings.max_tokens for f in fills)
    assert len({f.text for f in fills}) == len(fills)  # the candidates are different cuts
    two = engine.fill_gaps(["The ", " fox ", "."])
    assert len(two[0].texts) == 2


def test_grow_continues_text_with_nothing_after_it(engine):
    """No suffix: only the null token can say the text ends; the fill still stops within its job's bound."""
    from diffusion_core.infer.engine import length_prior
    bound = length_prior("continue", EngineSettings(max_tokens=5)).max_tokens
    fill = engine.continue_text("Masked diffusion fills", settings=EngineSettings(max_tokens=5))[0]
    assert 1 <= fill.tokens <= bound and fill.passes <= bound + 1


def test_each_job_has_its_length_prior():
    from diffusion_core.infer.engine import JOBS, length_prior
    s = EngineSettings(max_tokens=16)
    priors = {job: length_prior(job, s, size_tokens=5) for job in JOBS}
    assert priors["fill"].max_tokens == 16 and not priors["fill"].whole
    assert priors["sized"].max_tokens == 10 and not priors["sized"].whole   # about the size the user showed
    assert priors["sized"].min_tokens == 4 and priors["fill"].min_tokens == 1
    assert priors["continue"].whole and priors["continue"].max_tokens >= 48          # to a sentence's end
    assert priors["bridge"].whole and priors["bridge"].max_tokens > priors["continue"].max_tokens
    with pytest.raises(ValueError, match="unknown job"):
        length_prior("poem", s)


def test_grow_ends_only_where_the_job_may_end_when_it_gets_there():
    """Ending after one token is likeliest, but the job wants whole sentences: the cut is the first
    length where ``may_end`` says yes; if none is reached, the best claim of the rest."""
    from diffusion_core.infer.grow import grow

    def table(n, k):
        return {1: 0.6, AFTER: 0.4} if n + k < 3 else {2: 0.5, AFTER: 0.5}
    whole = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER]), 9, [NULL, AFTER], [NULL], 8,
                 may_end=lambda written: written[-1] == 2)
    assert whole.tokens[:4] == [1, 1, 1, 2] and whole.best() == [4]
    free = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER]), 9, [NULL, AFTER], [NULL], 8)
    assert free.best() == [1]
    never = grow(_scripted(table), torch.tensor([0, 3]), torch.tensor([AFTER]), 9, [NULL, AFTER], [NULL], 3,
                 may_end=lambda written: False)
    assert never.best() == [1]                            # no length may end: the best of the others



def test_a_refilled_selection_is_about_as_long_as_the_selection(engine):
    """A selection refilled gets at least three quarters of its tokens back (the model alone cuts short)."""
    selected = "the quick brown fox jumps over the lazy dog"
    n = len(engine.tokenizer(selected, add_special_tokens=False).input_ids)
    fill = engine.fill("Every morning ", " and runs away.", unlike=selected)[0]
    assert round(0.75 * n) <= fill.tokens <= 2 * n, (fill.text, fill.tokens, n)


def test_a_long_blank_asks_for_about_as_many_characters(engine):
    """A run of underscores sized by the writer: the fill has at least three quarters of the tokens those
    characters are in the text around it; a three-underscore blank leaves the length to the model."""
    from diffusion_core.infer.markers import compile_marker, hinted_size, split_gaps
    text = "The report was late because " + "_" * 40 + " and nobody had checked the figures before the meeting."
    pieces, spans = split_gaps(text, compile_marker(None))
    sizes = [hinted_size(text[a:b]) for a, b in spans]
    assert sizes == [40]
    wanted = engine._tokens_for(40, pieces[0][-200:] + pieces[1][:200])
    fill = engine.fill_gaps(pieces, sizes=sizes)[0]
    assert fill.tokens >= round(0.75 * wanted) >= 5, (fill.text, fill.tokens, wanted)
    with pytest.raises(ValueError, match="one size"):
        engine.fill_gaps(pieces, sizes=[40, None])


def test_only_a_long_run_of_underscores_hints_a_size():
    from diffusion_core.infer.markers import hinted_size
    assert hinted_size("____") == 4 and hinted_size("_" * 30) == 30
    assert hinted_size("___") is None and hinted_size("[MASK]") is None and hinted_size("__x__") is None


def test_prompt_lookup_guesses_the_token_that_follows_the_fill_where_it_occurs_in_the_text():
    from diffusion_core.infer.grow import _copied
    text = [5, 6, 7, 8, 5, 6, 9, 1, 2]
    assert list(_copied(text, [3, 5, 6])) == [9, 7]   # the last two tokens, the last occurrence first
    assert list(_copied(text, [4, 8])) == [5]          # no occurrence of (4, 8): the last token alone
    assert list(_copied(text, [42])) == [] and list(_copied(text, [])) == []
