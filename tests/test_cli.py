import json
import subprocess
import sys

import pytest

from diffusion_core.cli import main


def test_fill_json_round_trips_the_text(tiny_model_dir, capsys, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("def add(a, b):\n    return [MASK]\n\nx = ___ + 1\n"))
    assert main(["fill", "-", "--model", str(tiny_model_dir), "--json", "--candidates", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    best = out["candidates"][0]
    assert len(best["fills"]) == 2
    a, b = best["fills"]
    assert best["text"] == f"def add(a, b):\n    return {a}\n\nx = {b} + 1\n"


def test_fill_without_marker_is_an_error(tiny_model_dir, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("no gaps here")
    assert main(["fill", str(f), "--model", str(tiny_model_dir)]) == 2
    assert "no gap marker" in capsys.readouterr().err


def test_fill_with_custom_marker_and_length(tiny_model_dir, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("The quick <?> fox")
    assert main(["fill", str(f), "--model", str(tiny_model_dir), "--marker", "<\\?>", "--length", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The quick ") and out.rstrip("\n").endswith(" fox")


@pytest.mark.parametrize("strategy", ["diffusion", "one-shot", "left-to-right"])
def test_eval_reports_per_kind_and_overall(tiny_model_dir, tmp_path, capsys, strategy):
    data = tmp_path / "dev.jsonl"
    rows = [{"id": "1", "kind": "prose", "prefix": "The quick ", "suffix": " fox", "answer": "brown"},
            {"id": "2", "kind": "code", "prefix": "def add(a, b):\n    return ", "suffix": "\n", "answer": "a + b"},
            {"id": "3", "kind": "code", "prefix": "x = ", "suffix": "", "answer": "1"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "report.json"
    assert main(["eval", str(data), "--model", str(tiny_model_dir), "--strategy", strategy, "--json", str(out),
                 "--oracle-length", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"prose", "code", "overall"}
    assert report["overall"]["n"] == 3 and report["code"]["n"] == 2
    for key in ("exact", "exact_ci", "char_sim", "passes", "passes_per_token", "latency_ms"):
        assert key in report["overall"]
    assert "overall" in capsys.readouterr().out


def test_eval_reports_a_bad_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "dev.jsonl"
    data.write_text('{"prefix": "a"}\n')
    assert main(["eval", str(data), "--model", str(tiny_model_dir)]) == 2
    assert "missing field" in capsys.readouterr().err


def test_console_script_runs_as_a_process(tiny_model_dir):
    r = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "fill", "-", "--model", str(tiny_model_dir)],
                       input="Hello [MASK] world", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello ") and r.stdout.rstrip("\n").endswith(" world")


# -- issue 14, item 6 ------------------------------------------------------------------------------------------
def test_candidates_are_printed_pick_first_labelled_with_their_log_prob(tiny_model_dir, tmp_path, capsys):
    import re
    f = tmp_path / "t.txt"
    f.write_text("A language server [MASK] requests from an editor.\n")  # distinct cuts from the tiny model
    assert main(["fill", str(f), "--model", str(tiny_model_dir), "--candidates", "4"]) == 0
    out = capsys.readouterr().out
    labels = re.findall(r"^--- candidate (\d+)(, the pick)? \(log-prob (-?\d+\.\d+)\)$", out, re.M)
    assert len(labels) >= 2 and [int(n) for n, _, _ in labels] == list(range(1, len(labels) + 1))
    assert labels[0][1] and not any(pick for _, pick, _ in labels[1:])     # the pick first, labelled so
    texts = re.split(r"^--- candidate .*$\n", out, flags=re.M)[1:]
    assert len(set(texts)) == len(texts) and all("[MASK]" not in t for t in texts)
    assert main(["fill", str(f), "--model", str(tiny_model_dir), "--candidates", "4", "--json"]) == 0
    shown = [c["log_prob"] for c in json.loads(capsys.readouterr().out)["candidates"]]
    assert [round(x, 3) for x in shown] == [float(lp) for _, _, lp in labels]


@pytest.mark.parametrize("option, value", [("--candidates", "0"), ("--length", "0"), ("--length", "-3"),
                                           ("--candidates", "two")])
def test_zero_or_negative_counts_are_rejected(tiny_model_dir, tmp_path, capsys, option, value):
    f = tmp_path / "t.txt"
    f.write_text("Hello [MASK] world")
    with pytest.raises(SystemExit) as exit_:
        main(["fill", str(f), "--model", str(tiny_model_dir), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_json_into_a_pipe_the_reader_closed_exits_quietly(tiny_model_dir, tmp_path):
    """`diffill fill --json ... | head`: once the reader is gone, no "Broken pipe" message and no traceback."""
    f = tmp_path / "t.txt"
    f.write_text("Hello [MASK] world")
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_core.cli", "fill", str(f), "--model", str(tiny_model_dir),
                             "--json", "--candidates", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before anything is written (loading the model takes a while)
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err


def test_a_folder_that_is_not_a_model_says_what_it_lacks(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "README.md").write_text("not a model")
    (tmp_path / "t.txt").write_text("Hello [MASK] world")
    assert main(["fill", str(tmp_path / "t.txt"), "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a folder but not a model" in err and "no config.json and no *.safetensors weights" in err
    assert "not found" not in err


def test_a_bad_substitution_spec_fails_before_anything_loads(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--substitute", "mid:0.9"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --substitute" in err and "[0, 0.5]" in err
    assert not (tmp_path / "run").exists()


def test_proofread_prints_the_text_a_diff_json_or_writes_back(tiny_model_dir, tmp_path, capsys):
    f = tmp_path / "t.txt"
    original = "Teh cat sat on teh mat.\nSecond line, untouched?\n"
    f.write_text(original)
    common = ["--model", str(tiny_model_dir), "--margin", "0"]
    assert main(["proofread", str(f), *common, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    text = out["text"]
    assert text == "".join(_spliced(original, out["changes"]))
    assert main(["proofread", str(f), *common]) == 0
    assert capsys.readouterr().out == text          # the text as corrected, nothing added
    assert main(["proofread", str(f), *common, "--diff"]) == 0
    diff = capsys.readouterr().out
    assert (diff == "") == (text == original)
    if diff:
        assert diff.startswith(f"--- {f}\n+++ {f} (proofread)\n")
    assert main(["proofread", str(f), *common, "-i"]) == 0
    assert f.read_text() == text and f"word(s) changed in {f}" in capsys.readouterr().err
    assert main(["proofread", "-", *common, "-i"]) == 2
    assert "--in-place needs a FILE" in capsys.readouterr().err


def _spliced(text, changes):
    at = 0
    for c in sorted(changes, key=lambda c: c["start"]):
        assert text[c["start"]:c["end"]] == c["old"]
        yield text[at:c["start"]]
        yield c["new"]
        at = c["end"]
    yield text[at:]


def test_the_cli_offers_the_engines_strategies_and_defaults():
    """The CLI's decoding options mirror the engine's: the same strategies (plus the autoregressive
    baseline) and the same defaults."""
    from diffusion_core.cli import build_parser
    from diffusion_core.infer.engine import STRATEGIES, EngineSettings
    fill = build_parser()._subparsers._group_actions[0].choices["fill"]
    actions = {a.dest: a for a in fill._actions}
    assert list(actions["strategy"].choices) == [*STRATEGIES, "autoregressive"]
    d = EngineSettings()
    assert (actions["max_tokens"].default, actions["context_tokens"].default, actions["threshold"].default) == \
        (d.max_tokens, d.context_tokens, d.threshold)
