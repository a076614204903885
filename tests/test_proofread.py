"""Proofreading: chunking, splicing and the engine job on the tiny model (the shipped model: test_smollm2_model)."""
import pytest
from hypothesis import given, settings, strategies as st

from diffusion_core.infer.proofread import Change, apply, chunks, replacement, windows


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab_9 .,'’\n\t-é日")), max_size=60))
def test_chunks_cover_the_text_exactly_and_words_carry_their_leading_space(text):
    cs = chunks(text)
    assert "".join(text[c.start:c.end] for c in cs) == text
    assert all(a.end == b.start for a, b in zip(cs, cs[1:]))
    for c in cs:
        body = text[c.start:c.end].lstrip()
        assert c.word == (bool(body) and (body[0].isalnum() or body[0] == "_"))
        assert c.start <= c.word_start(text) <= c.end


def test_apply_splices_changes_in_any_order():
    text = "Teh cat sat on teh mat."
    changes = [Change(15, 18, "teh", "the", 0.0), Change(0, 3, "Teh", "The", 0.0)]
    assert apply(text, changes) == "The cat sat on the mat."
    assert apply(text, []) == text


@pytest.mark.parametrize("old, fill, new", [(" teh", " the", "the"), (" Berlin", "Paris", "Paris"),
                                            (" the", " The", None), (" cat", " big cat", None), (" cat", " !", None),
                                            (" cat", "  ", None), (" dont", " don't", "don't")])
def test_a_replacement_is_another_single_word(old, fill, new):
    assert replacement(old, fill) == new


def test_windows_group_consecutive_chunks_within_the_budget():
    sizes = [3, 4, 5, 200, 1, 1]
    groups = windows(sizes, budget=10)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    assert groups == [[0, 1], [2], [3], [4, 5]]


@pytest.mark.parametrize("reading", ["masked", "visible"])
def test_engine_changes_only_words_and_keeps_every_other_byte(engine, reading):
    text = "Teh cat  sat on teh mat,\n\tand the dog barked; it's late.\n"
    out = engine.proofread("Before. ", text, " After.", reading=reading, below=0.5)
    assert apply(text, out.changes) == out.text and out.passes >= 1
    for c in out.changes:
        assert text[c.start:c.end] == c.old and c.new != c.old and c.old.strip() == c.old
        assert 0.0 <= c.probability < 0.5
    import re
    assert re.sub(r"\w+(?:['’-]\w+)*", "W", out.text) == re.sub(r"\w+(?:['’-]\w+)*", "W", text)


def test_a_bad_reading_is_a_clear_error(engine):
    with pytest.raises(ValueError, match="unknown reading"):
        engine.proofread("", "some text", "", reading="squint")


def test_nothing_to_read_is_no_change(engine):
    for text in ("", "   ", ", . ;"):
        out = engine.proofread("a ", text, " b")
        assert out.text == text and not out.changes


def test_a_long_passage_reports_each_window_and_can_be_cancelled(engine):
    from diffusion_core.infer.sampler import Cancelled
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 60)
    seen = []

    def stop_at_second_window(step, total, _ids):
        seen.append((step, total))
        if step == 2 and total > 2:
            raise Cancelled()
    with pytest.raises(Cancelled):
        engine.proofread("", text, "", below=1e-12, on_step=stop_at_second_window)
    assert seen[-1][0] == 2 and seen[-1][1] >= 3
