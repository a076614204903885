"""The user's settings, declared once: name, default, bounds or choices, one line of documentation.

Everything else derives from this table: the language server validates what
an editor sends against it (a bad value is reported and replaced by its
default), the engine takes its defaults from it, the CLI options that mirror
a setting take their default and bounds from it, and VS Code's
``contributes.configuration`` and the README's settings table are generated
from it (``python -m diffusion_core.settings`` rewrites both;
tests/test_settings.py fails when either has drifted).  Neovim passes
settings through unchanged.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from diffusion_core.infer.markers import DEFAULT_MARKER

PRECISIONS = ("auto", "int8", "bf16", "fp32")


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    doc: str
    bounds: tuple[float, float] | None = None   # inclusive, for numbers
    choices: tuple[str, ...] | None = None      # for strings

    def check(self, value) -> tuple[object, str | None]:
        """(the value to use, None) for a good value; (the default, what is wrong) for a bad one."""
        name, default = self.name, self.default
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                return default, f"{name} must be a list of language ids"
            return tuple(value), None
        if isinstance(default, str):
            if not isinstance(value, str):
                return default, f"{name} must be a string"
            if self.choices and value not in self.choices:
                return default, f"{name} must be one of {', '.join(self.choices)}, not {value!r}"
            if name == "gapMarker":
                try:
                    if re.compile(value).match(""):
                        return default, "gapMarker must not match the empty string"
                except re.error as exc:
                    return default, f"gapMarker is not a valid regular expression: {exc}"
            return value, None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default, f"{name} must be a number"
        if isinstance(value, float) and value != value:
            return default, f"{name} must be a number, not NaN"
        lo, hi = self.bounds
        if not lo <= value <= hi:  # compared before float(): JSON integers can be too large for a float
            return default, f"{name} must be between {lo} and {hi}, not {str(value)[:40]}"
        if isinstance(default, int) and not float(value).is_integer():
            return default, f"{name} must be a whole number"
        return type(default)(value), None


SETTINGS = (
    Setting("model", "", "Model path or name; empty: $DIFFILL_MODEL, else the shipped smollm2-diffill."),
    Setting("maxTokens", 16, "Longest fill, in tokens (the model stops earlier where it judges the gap ends).",
            bounds=(1, 128)),
    Setting("candidates", 1, "Inline suggestions offered at the cursor (the extra ones are the lengths the model "
                             "ranks next).", bounds=(1, 10)),
    Setting("trigger", "automatic", "When inline suggestions are made: while typing (automatic) or only when "
                                    "asked (manual).", choices=("automatic", "manual")),
    Setting("enabledLanguages", ("*",), "Language ids that get suggestions at the cursor; * means all."),
    Setting("disabledLanguages", (), "Language ids that never get suggestions at the cursor (wins over "
                                     "enabledLanguages)."),
    Setting("gapMarker", DEFAULT_MARKER, "Regular expression (Python syntax) of the gaps that Fill Gaps fills: "
                                         "[MASK] or three or more underscores."),
    Setting("steps", 0, "Denoising passes where the length is known (rewrite, --length); 0 chooses (half the slots).",
            bounds=(0, 256)),
    Setting("threshold", 0.9, "Also commit every slot the model is at least this sure of in the same pass "
                              "(0 = off).", bounds=(0.0, 1.0)),
    Setting("contextChars", 2000, "Characters read on each side of the cursor.", bounds=(0, 100_000)),
    Setting("contextTokens", 48, "Model tokens of context kept on each side of a gap.", bounds=(0, 250)),
    Setting("maxDocumentChars", 5_000_000, "Larger documents get no fills (they are not read).",
            bounds=(1, 100_000_000)),
    Setting("proofreadMargin", 1.5, "Proofreading replaces a word only when a correction (the model's reading of "
                                    "the context and the likelihood of the slip together) beats it by this many "
                                    "nats; higher: fewer, surer changes.", bounds=(0.0, 30.0)),
    Setting("threads", 0, "Torch threads; 0 = torch's default.", bounds=(0, 256)),
    Setting("precision", "auto", "Inference precision: auto (bf16 where the CPU runs it fast, else fp32; int8 "
                                 "only for models it does not hurt), int8, bf16 or fp32. Changing it reloads the "
                                 "model.", choices=PRECISIONS),
)
BY_NAME = {s.name: s for s in SETTINGS}


def vscode_properties() -> dict:
    """The ``diffill.*`` entries of VS Code's ``contributes.configuration.properties`` for every setting."""
    out = {}
    for s in SETTINGS:
        if isinstance(s.default, tuple):
            entry = {"type": "array", "items": {"type": "string"}, "default": list(s.default)}
        elif isinstance(s.default, str):
            entry = {"type": "string", "default": s.default}
        else:
            entry = {"type": "integer" if isinstance(s.default, int) else "number", "default": s.default,
                     "minimum": s.bounds[0], "maximum": s.bounds[1]}
        if s.choices:
            entry["enum"] = list(s.choices)
        entry["description"] = s.doc
        out[f"diffill.{s.name}"] = entry
    return out


def markdown_table() -> str:
    """The README's settings table."""
    def shown(v) -> str:
        return json.dumps(list(v) if isinstance(v, tuple) else v).replace("|", "\\|")
    rows = ["| setting | default | range or choices | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        allowed = " · ".join(s.choices) if s.choices else (f"{s.bounds[0]}–{s.bounds[1]}" if s.bounds else "")
        doc = s.doc.replace("|", "\\|")
        rows.append(f"| `{s.name}` | `{shown(s.default)}` | {allowed} | {doc} |")
    return "\n".join(rows)


TABLE_START, TABLE_END = "<!-- settings: generated by python -m diffusion_core.settings -->", "<!-- /settings -->"


def with_table(readme: str) -> str:
    """``readme`` with the text between the table markers replaced by ``markdown_table()``."""
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    return readme[:start] + "\n" + markdown_table() + "\n" + readme[end:]


def with_properties(package: dict) -> dict:
    """``package`` (VS Code's package.json) with every setting's entry as ``vscode_properties`` makes it; the
    extension's own settings (``diffill.server.*``, ``diffill.trace.server``) stay."""
    props = package["contributes"]["configuration"]["properties"]
    own = {k: v for k, v in props.items() if k.removeprefix("diffill.") not in BY_NAME}
    package["contributes"]["configuration"]["properties"] = {**vscode_properties(), **own}
    return package


def main(root: Path = Path(__file__).resolve().parents[1]) -> int:
    """Rewrite the generated copies: the README's table and VS Code's package.json."""
    readme = root / "README.md"
    readme.write_text(with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    package = root / "editors" / "vscode" / "package.json"
    data = with_properties(json.loads(package.read_text(encoding="utf-8")))
    package.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {readme} and {package}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
