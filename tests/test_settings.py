"""Settings are declared once (diffusion_core/settings.py); every copy is generated from it or checked here, so
a default, a bound, a choice or a description changed in one place only fails this file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffusion_core.cli import MIRRORED, build_parser
from diffusion_core.infer.engine import EngineSettings
from diffusion_core.settings import BY_NAME, SETTINGS, TABLE_END, TABLE_START, markdown_table, with_properties
from server.config import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
FIX = "run `python -m diffusion_core.settings` to regenerate it"


def test_vscode_contributes_every_setting_as_declared():
    package = json.loads((ROOT / "editors/vscode/package.json").read_text(encoding="utf-8"))
    assert package == with_properties(json.loads(json.dumps(package))), f"package.json has drifted; {FIX}"


def test_the_readme_table_is_the_schema():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(TABLE_START) + len(TABLE_START):readme.index(TABLE_END)]
    assert table.strip() == markdown_table(), f"README's settings table has drifted; {FIX}"


def test_the_server_takes_every_setting_with_its_default_and_bounds():
    assert [f for f in Settings.__dataclass_fields__] == [s.name for s in SETTINGS]
    assert all(getattr(Settings(), s.name) == s.default for s in SETTINGS)
    for s in SETTINGS:
        if s.bounds:
            over = s.bounds[1] + 1
            settings, problems = parse_settings({s.name: over})
            assert getattr(settings, s.name) == s.default and problems, s.name
        if s.choices:
            settings, problems = parse_settings({s.name: "no-such-choice"})
            assert getattr(settings, s.name) == s.default and problems, s.name


def test_the_engine_and_the_cli_take_their_defaults_and_bounds_from_the_schema():
    engine = EngineSettings()
    assert (engine.max_tokens, engine.context_tokens, engine.threshold, engine.proofread_margin) == \
        (BY_NAME["maxTokens"].default, BY_NAME["contextTokens"].default, BY_NAME["threshold"].default,
         BY_NAME["proofreadMargin"].default)
    for command in ("fill", "proofread", "eval"):
        actions = {a.option_strings[0]: a for a in build_parser()._subparsers._group_actions[0]
                   .choices[command]._actions if a.option_strings}
        own = {"--margin": "proofreadMargin"} if command == "proofread" else {}
        for flag, name in {**MIRRORED, **own}.items():
            s = BY_NAME[name]
            assert actions[flag].default == s.default and actions[flag].help == s.doc, flag
            if s.choices:
                assert tuple(actions[flag].choices) == s.choices
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fill", "--max-tokens", str(BY_NAME["maxTokens"].bounds[1] + 1)])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["proofread", "--margin", str(BY_NAME["proofreadMargin"].bounds[1] + 1)])
