"""The shipped SmolLM2 delta: it names its base, stays compact, assembles on the real base (which
scripts/setup.sh fetched) and fills sensibly, on its own and in the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_core.model.base import SMOLLM2
from diffusion_core.model.loading import SHIPPED_MODELS

ROOT = Path(__file__).resolve().parents[1]
MODEL = SHIPPED_MODELS["smollm2-diffill"]


def test_the_delta_names_its_base_and_is_compact():
    config = json.loads((MODEL / "config.json").read_text())
    assert config["diffill_base"] == SMOLLM2.name and config["diffill_base_sha256"] == SMOLLM2.gguf_sha256
    assert (MODEL / "delta.safetensors").stat().st_size <= 40 * 2**20
    assert not list(MODEL.glob("model*.safetensors"))  # never the base's weights
    card = (MODEL / "README.md").read_text()
    assert SMOLLM2.gguf_sha256 in card and "Apache-2.0" in card


@pytest.fixture(scope="module")
def engine():
    from diffusion_core.infer.engine import InfillEngine
    from diffusion_core.model.loading import load_model
    return InfillEngine(load_model("smollm2-diffill"))


def test_fills_known_facts_and_code(engine):
    assert engine.fill("The capital of France is ", ". It is a large city.")[0].text.strip() == "Paris"
    code = engine.fill("def mean(values):\n    return sum(values) / ", "\n")[0].text
    assert "len" in code and "\n" not in code


def test_a_mid_sentence_fill_joins_the_line(engine):
    fill = engine.fill("Conservative Judaism is a Jewish religious ", " that regards the authority of Jewish law")[0]
    assert fill.text.strip() and "\n" not in fill.text and not fill.text.startswith(" ")


def test_proofread_fixes_a_typo_and_leaves_the_rest(engine):
    text = "The capital of France is Paris. Teh museum is open every day."
    out = engine.proofread("", text, "")
    assert [(c.old, c.new) for c in out.changes if c.old == "Teh"] == [("Teh", "The")]
    assert out.text.startswith("The capital of France is Paris. The museum")


PLANTED = [  # (a paragraph with slips a writer makes, the paragraph meant): every slip restored, nothing else
    ("The library opens at nine in the mourning and closes at six in the evening. Members can burrow up to five "
     "books at a time and keep them for three weaks.",
     "The library opens at nine in the morning and closes at six in the evening. Members can borrow up to five "
     "books at a time and keep them for three weeks."),
    ("Please recieve the package before Friday. We will send an email when it arives at the front desk.",
     "Please receive the package before Friday. We will send an email when it arrives at the front desk."),
    ("There are three ways to install the tool, and each one takes less then a minut.",
     "There are three ways to install the tool, and each one takes less than a minute."),
    ("The function returns a list of strings, one for each line of the file, whithout the line breaks.",
     "The function returns a list of strings, one for each line of the file, without the line breaks."),
]


@pytest.mark.parametrize("text, meant", PLANTED)
def test_proofread_restores_every_slip_and_changes_nothing_else(engine, text, meant):
    out = engine.proofread("", text, "")
    assert out.text == meant, [(c.old, c.new, round(c.gain, 2)) for c in out.changes]


def test_proofread_finds_a_word_of_several_tokens_the_word_list_lacks_in_the_document(engine):
    # " Kierkegaard" is four tokens and not in the word list: the candidate comes from the document.
    text = "Søren Kierkegaard was a Danish philosopher. Later in life, Kierkegard wrote mostly about faith."
    out = engine.proofread("", text, "")
    assert [(c.old, c.new) for c in out.changes] == [("Kierkegard", "Kierkegaard")]


def test_exact_scoring_stops_only_texts_that_fall_to_their_floor(engine):
    # A candidate read token by token is left once its score so far is at or below its floor (each token only
    # lowers it): the others keep their exact score, and a stopped one stays at or below its floor.
    from diffusion_core.infer.proofreader import Proofreader
    reader = Proofreader(engine.tokenizer, engine._forward, lambda tokens: 48)
    left, right = "Søren Kierkegaard was a Danish philosopher. Later in life,", " wrote mostly about faith."
    rows = [(left, right, text) for text in (" Kierkegaard", " Kierkegard")]   # four tokens each
    exact = reader.chain_scores(rows)
    bounded = reader.chain_scores(rows, [exact[0] - 1.0, 0.0])
    # (bf16: the same rows batched otherwise differ by a few hundredths of a nat)
    assert bounded[0] == pytest.approx(exact[0], abs=0.2)
    assert bounded[1] <= 0.0 and bounded[1] > exact[1] + 1.0   # left after its first token


def test_main_job_runs_on_the_smollm2_model():
    r = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "fill", "--model", "smollm2-diffill",
                        str(ROOT / "examples" / "gaps.txt")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "[MASK]" not in r.stdout and "    return sum(values) / " in r.stdout


def test_autoregressive_baseline_is_the_base_as_pretrained():
    from diffusion_core.eval.autoregressive import load_baseline
    ar = load_baseline("smollm2-diffill")
    fill = ar.fill("The capital of France is", ". It is a large city.", length=1)[0]
    assert fill.text.strip() == "Paris"
