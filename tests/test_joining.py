"""Issue 14, items 3-5: fills join the text as written (diffusion_core/infer/joining.py).

Property tests check ``fit`` on its own over sides with and without spaces; the engine tests push a tiny
model towards the fills the issue saw (a leading space after a space, line breaks mid-line, a bare line break
at the end of a line) and check what comes out.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_core.infer.engine import EngineSettings, InfillEngine
from diffusion_core.infer.joining import fit, stays_in_line

SPACES = " \t"
words = st.text(alphabet="abcXY_1.,(", min_size=1, max_size=8)
gaps = st.sampled_from(["", " ", "  ", "\t", " \t"])
breaks = st.sampled_from(["\n", "\r\n", ""])


@st.composite
def sides(draw):
    """(before, fill, after): words with and without spaces on each side of each seam, sometimes a line end."""
    before = draw(st.sampled_from(["", draw(words)])) + draw(gaps)
    fill = draw(gaps) + draw(st.sampled_from(["", draw(words), draw(words) + " " + draw(words)])) + draw(gaps)
    after = draw(st.sampled_from([draw(gaps) + draw(words), draw(breaks) + draw(words), draw(breaks)]))
    return before, fill, after


def _wordy(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@settings(max_examples=400, deadline=None)
@given(case=sides())
def test_fit_never_doubles_a_space_and_never_drops_one(case):
    before, fill, after = case
    out = fit(before, fill, after)
    assert out.strip() == fill.strip()                           # only whitespace at the ends changes
    if out:
        # no doubled spaces: a space on the text's side of a seam is the only one there
        assert not (before[-1:] in (" ", "\t") and out[0] in SPACES)
        assert not (after[:1] in (" ", "\t") and out[-1] in SPACES)
    # no missing space: a space the model wrote where the text has none stays ...
    if fill[:1] in (" ", "\t") and before and not before[-1].isspace() and fill.strip():
        assert out[0] in SPACES
    if fill[-1:] in (" ", "\t") and after[:1] and _wordy(after[0]) and fill.strip():
        assert out[-1] in SPACES
    # ... and whole words written after a space never run into the word after the gap
    joined = before + out + after
    if fill.strip() and (not before or before[-1].isspace() or fill[0].isspace()) and _wordy(fill.rstrip()[-1]) \
            and after[:1] and _wordy(after[0]):
        assert joined[len(before) + len(out) - 1].isspace()
    if not after or after[0] in "\r\n":
        assert not out[-1:].isspace()                            # a fill never ends a line with spaces
    if (not before or before[-1] in "\r\n") and fill[:1] == " " and fill[1:2].strip():
        assert out[:1] != " "                                    # no stray space opening a line
    assert fit(before, out, after) == out                        # fitting a fitted text changes nothing


def test_fit_examples_from_the_issue():
    assert fit("The quick brown ", " fox", " jumps") == "fox"         # was "brown  fox  jumps"
    assert fit("The quick brown", " fox", " jumps") == " fox"
    assert fit("The quick ", "brown", "fox jumps") == "brown "         # a new word before a word
    assert fit("hel", "lo world", "") == "lo world"                    # finishing a word typed halfway
    assert fit("obj.", "get", "Name()") == "get"                       # code glued to punctuation stays glued
    assert fit("def f():", "\n    return 1\n", "\n") == "\n    return 1"
    assert fit("", " the", " quick brown") == "the"                   # a rewrite at the start of the text
    assert fit("one\n", " two", "") == "two"
    assert fit("def f():\n", "    return 1", "\n") == "    return 1"  # indentation is text, not a seam


def test_a_gap_stays_in_its_line_when_text_follows_it_there():
    assert stays_in_line(" the number of the gap.\nNext line")
    assert not stays_in_line("\nNext line") and not stays_in_line("") and not stays_in_line("   \r\nx")
    assert not stays_in_line(" and more", replaced="two\nlines")      # the gap itself spans lines


# -- the engine: the tiny model pushed towards bad joins ---------------------------------------------------------
@pytest.fixture()
def pushed(tiny_loaded):
    """push(predicate, by): raise the head's bias of every token whose text satisfies predicate."""
    head = tiny_loaded.model.cls.predictions
    bias = head.decoder.bias if head.decoder.bias is not None else head.bias
    saved = bias.data.clone()
    tok = tiny_loaded.tokenizer

    def push(predicate, by=30.0):
        for i in range(len(tok)):
            if i != tok.mask_token_id and predicate(tok.decode([i])):
                bias.data[i] += by
        return InfillEngine(tiny_loaded, EngineSettings(threshold=None))
    yield push
    bias.data.copy_(saved)


def test_a_mid_line_fill_has_no_line_break_and_is_not_empty(pushed):
    pushed(lambda t: t == " the", by=20.0)
    engine = pushed(lambda t: "\n" in t or not t.strip())  # line breaks and spaces first, then a word
    for prefix, suffix in [("The fill goes at the cursor and ", " the number of the gap.\n"),
                           ("x = ", "compute() + other\n")]:
        for f in engine.fill(prefix, suffix, candidates=3):
            assert "\n" not in f.text and "\r" not in f.text and f.text.strip(), repr(f.text)
    # the push is real: unconstrained, the model's best token at the gap shows nothing or breaks the line
    tok = engine.tokenizer
    ids = torch.tensor([tok("The fill goes at the cursor and", add_special_tokens=False).input_ids
                        + [tok.mask_token_id] + tok(" the number", add_special_tokens=False).input_ids])
    top = tok.decode([int(engine._forward(ids, ids == tok.mask_token_id).argmax(-1))])
    assert "\n" in top or not top.strip(), repr(top)


def test_a_fill_after_a_space_does_not_start_with_another(pushed):
    engine = pushed(lambda t: t[:1] == " " and t.strip().isalpha())   # every likely token opens with a space
    fill = engine.fill("The quick brown ", " over the lazy dog.")[0]
    assert fill.text.strip() and not fill.text.startswith(" ") and not fill.text.endswith(" ")
    assert engine.fill("The quick brown", " over the lazy dog.")[0].text.startswith(" ")


def test_ghost_text_at_the_end_of_a_line_whose_best_fill_is_a_line_break(pushed):
    """The model would rather write a bare line break there (no ghost text at all): a fill opens on its line,
    so the best fill written on the line is offered."""
    from server.config import Settings
    from server.jobs import cursor_fills
    engine = pushed(lambda t: bool(t) and not t.strip() and "\n" in t, by=60.0)
    source = "It was a dark and stormy night.\nThe fill goes at the end of this line\n\nNext paragraph.\n"
    offset = source.index(" line\n") + len(" line")
    fill = engine.fill(source[:offset], source[offset:])[0].text
    assert fill.strip() and not fill.lstrip(" ").startswith("\n"), repr(fill)
    texts = cursor_fills(source, offset, Settings(), candidates=1).run(engine, None)
    assert texts and all(t.strip() and "\n" not in t for t in texts)


def test_continue_writes_on_the_line_when_the_best_continuation_is_a_line_break(pushed):
    from server.config import Settings
    from server.jobs import plan_job
    engine = pushed(lambda t: bool(t) and not t.strip() and "\n" in t, by=60.0)
    source = "It was a dark and stormy night.\nA second line to write after: "
    assert not engine.continue_text(source)[0].text.lstrip(" ").startswith("\n")
    [edit] = plan_job("continue", source, len(source), len(source), Settings()).run(engine, None)
    assert edit.text.strip() and "\n" not in edit.text and not edit.text.startswith(" ")  # after ": "


def test_a_refilled_selection_is_other_text_than_the_selection(tiny_loaded):
    from server.config import Settings
    from server.jobs import plan_job
    engine = InfillEngine(tiny_loaded)
    prefix, suffix = "The quick brown ", " jumps over the lazy dog."
    best = engine.fill(prefix, suffix)[0].text.strip()
    assert best  # select exactly what the model would write there
    source = prefix + best + suffix
    [edit] = plan_job("fillSelection", source, len(prefix), len(prefix) + len(best), Settings()).run(engine, None)
    assert edit.text.strip() and edit.text.strip() != best


def test_a_rewrite_within_a_line_writes_no_line_break(pushed):
    engine = pushed(lambda t: "\n" in t, by=60.0)                    # every likely token breaks the line
    for prefix in ["", "A first line.\n\n", "The word "]:
        fill = engine.rewrite(prefix, "Zqxwv", " jumps over the fence.\n", strength=1.0)
        assert fill.text.strip() and "\n" not in fill.text, repr(fill.text)
    # a passage over two lines may keep or drop a line break
    assert engine.rewrite("", "one\ntwo", " three", strength=1.0).text.strip()


def test_a_rewrite_at_the_start_of_the_text_opens_without_a_space(pushed):
    engine = pushed(lambda t: t[:1] == " " and t.strip().isalpha())   # every likely token opens with a space
    fill = engine.rewrite("", "The", " quick brown fox.", strength=1.0)
    assert fill.text.strip() and not fill.text.startswith(" ")



def test_a_sentence_end_before_a_lower_case_word_ends_too_early():
    from diffusion_core.infer.joining import ends_sentence_early
    assert ends_sentence_early("watch the sea.", " and to see") and ends_sentence_early('it.")', " said he")
    assert not ends_sentence_early("watch the sea.", " The next day") and not ends_sentence_early("sea", " and")
    assert not ends_sentence_early("the end.", "") and not ends_sentence_early("x.", "\nnext line")
