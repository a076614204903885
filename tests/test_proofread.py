"""Proofreading: chunking, splicing, the channel, the candidates and the engine job on the tiny model (the shipped
model: test_smollm2_model)."""
import pytest
from hypothesis import given, settings, strategies as st

from diffusion_core.infer import channel
from diffusion_core.infer.proofread import Change, apply, chunks, windows


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


def test_the_channel_prices_a_slip_by_its_operations():
    c = channel.COSTS
    assert channel.cost("weeks", "weeks") == 0.0
    assert channel.cost("teh", "the") == c["transpose"]
    assert channel.cost("adress", "address") == c["undouble"] and channel.cost("untill", "until") == c["double"]
    assert channel.cost("wek", "week") == c["undouble"] and channel.cost("wrk", "work") == c["delete"]
    assert channel.cost("burrow", "borrow") == c["substitute"] and channel.cost("Mourning", "morning") == c["insert"]
    assert channel.cost("cat", "dog") == 3 * c["substitute"]                 # unrelated words: far apart
    assert channel.edits("recieve", "receive") == 1 and channel.edits("cat", "dog") == 3


def test_candidates_are_real_words_one_edit_away_cased_like_the_word():
    words = {"weeks": 1000, "week": 500, "peaks": 10, "borrow": 800}
    assert channel.candidates("weaks", words, {})[0] == "weeks"              # a commoner word first among equals
    assert set(channel.candidates("weaks", words, {})) == {"weeks", "peaks"}
    assert channel.candidates("Burrow", words, {}) == ["Borrow"]
    assert channel.candidates("cat", words, {}) == []


def test_words_absent_from_the_word_list_come_from_the_document():
    document = channel.document_words("Kierkegaard wrote on irony. Later, Kierkegard's critics ...")
    assert "Kierkegaard" in channel.candidates("Kierkegard", {}, document)
    assert "Kierkegaard" in channel.candidates("kierkegard", channel.lexicon(), document)


@pytest.mark.parametrize("word, judged", [("weaks", True), ("Teh", True), ("it's", True), ("tb_next", False),
                                          ("HTTP", False), ("camelCase", False), ("2026", False), ("a", False)])
def test_only_plain_words_are_judged(word, judged):
    assert channel.checked(word) == judged


def test_windows_group_consecutive_chunks_within_the_budget():
    sizes = [3, 4, 5, 200, 1, 1]
    groups = windows(sizes, budget=10)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    assert groups == [[0, 1], [2], [3], [4, 5]]


def test_engine_changes_only_words_and_keeps_every_other_byte(engine):
    text = "Teh cat  sat on teh mat,\n\tand the dog barked; it's late.\n"
    out = engine.proofread("Before. ", text, " After.", margin=0.0)
    assert apply(text, out.changes) == out.text and out.passes >= 1
    for c in out.changes:
        assert text[c.start:c.end] == c.old and c.new != c.old and c.old.strip() == c.old
        assert c.gain > 0.0 and channel.edits(c.old, c.new) <= channel.GUESS_EDITS
    import re
    assert re.sub(r"\w+(?:['’-]\w+)*", "W", out.text) == re.sub(r"\w+(?:['’-]\w+)*", "W", text)


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
        engine.proofread("", text, "", on_step=stop_at_second_window)
    assert seen[-1][0] == 2 and seen[-1][1] >= 3


def test_the_evaluation_drops_the_words_cut_at_a_record_s_ends():
    from diffusion_core.eval.proofread_eval import whole_words
    assert whole_words("overnment of the land was populati") == " of the land was "
    assert whole_words(" The end.\n") == " The end.\n"
