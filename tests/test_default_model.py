"""The shipped default model: it loads, it is cased and small, and the product runs on it end to end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from diffusion_core.model.loading import SHIPPED_DEFAULT, load_model, resolve_model_dir

ROOT = Path(__file__).resolve().parents[1]


def test_default_resolves_to_the_shipped_model(monkeypatch):
    monkeypatch.delenv("DIFFILL_MODEL", raising=False)
    assert resolve_model_dir(None) == SHIPPED_DEFAULT
    size = sum(f.stat().st_size for f in SHIPPED_DEFAULT.iterdir())
    assert size <= 40 * 2**20
    assert (SHIPPED_DEFAULT / "README.md").exists()  # the model card


def test_shipped_tokenizer_is_cased_and_lossless():
    loaded = load_model("default")
    tok = loaded.tokenizer
    text = "def Mean(values):\n\treturn sum(values) / len(values)  # Ünïcode 🎉\n"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == text
    assert tok("Paris", add_special_tokens=False).input_ids != tok("paris", add_special_tokens=False).input_ids
    assert loaded.null_token_id is not None


def test_main_job_fills_the_example_on_the_shipped_model():
    r = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "fill", str(ROOT / "examples" / "gaps.txt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[MASK]" not in r.stdout
    assert r.stdout.startswith("The language server reads the text around the cursor and ")
    assert "    return sum(values) / " in r.stdout


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "server"]))
async def client(lsp_client: LanguageClient):
    lsp_client.statuses = []

    @lsp_client.feature("diffill/status")
    def status(params):
        lsp_client.statuses.append(params)
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("neovim")))
    yield
    await lsp_client.shutdown_session()


async def test_server_answers_on_the_shipped_model(client: LanguageClient):
    uri = "file:///tmp/diffill-default/notes.md"
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="markdown", version=1,
        text="The meeting is on Monday. We will discuss the budget and  for next year.\n")))
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(0, 57),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    assert isinstance(result, types.InlineCompletionList)
    states = [s["state"] if isinstance(s, dict) else s.state for s in client.statuses]
    assert "error" not in states
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))
    assert Path(status["model"]) == SHIPPED_DEFAULT
