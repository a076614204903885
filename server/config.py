"""Typed settings for the language server, and their validation.

Settings arrive as ``initializationOptions``, from ``workspace/configuration``
(section ``diffill``) and with ``workspace/didChangeConfiguration``.  A bad
value never fails a request or ``initialize``: it is reported (see
``parse_settings``'s messages, shown with ``window/showMessage``) and replaced
by its default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from diffusion_core.engine import EngineSettings
from diffusion_core.gaps import DEFAULT_MARKER
from diffusion_core.model.precision import PRECISIONS


@dataclass(frozen=True)
class Settings:
    model: str = ""                       # path or name; "" = $DIFFILL_MODEL or the shipped default
    steps: int = 0                        # 0 = automatic (slots / 2)
    threshold: float = 0.9                # commit every slot at least this sure (0 = off)
    maxTokens: int = EngineSettings.max_tokens  # longest fill, in tokens (the model stops where the gap ends)
    candidates: int = 1                   # inline completion items (each extra one costs a sampled row)
    trigger: str = "automatic"            # automatic | manual (only explicit invocations are answered)
    enabledLanguages: tuple[str, ...] = ("*",)
    disabledLanguages: tuple[str, ...] = ()
    gapMarker: str = DEFAULT_MARKER
    contextChars: int = 2000              # characters read on each side of the cursor
    maxDocumentChars: int = 5_000_000     # larger documents are not read for completion
    threads: int = 0                      # torch threads; 0 = torch's default
    precision: str = "auto"               # auto | int8 | bf16 | fp32 (see diffusion_core/model/precision.py)
    contextTokens: int = 48               # model tokens of context on each side of the gap

    def language_enabled(self, language_id: str | None) -> bool:
        lang = language_id or ""
        if lang in self.disabledLanguages:
            return False
        return "*" in self.enabledLanguages or lang in self.enabledLanguages


def _check(name: str, value, default):
    """Return (value, problem) for one field; problem is None when the value is good."""
    choices = {"trigger": ("automatic", "manual"), "precision": PRECISIONS}
    bounds = {"steps": (0, 256), "maxTokens": (1, 128), "candidates": (1, 10), "contextChars": (0, 100_000),
              "maxDocumentChars": (1, 100_000_000), "threads": (0, 256), "threshold": (0.0, 1.0),
              "contextTokens": (0, 250)}
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return default, f"{name} must be a list of language ids"
        return tuple(value), None
    if isinstance(default, bool) or isinstance(default, str):
        if not isinstance(value, str):
            return default, f"{name} must be a string"
        if name in choices and value not in choices[name]:
            return default, f"{name} must be one of {', '.join(choices[name])}, not {value!r}"
        if name == "gapMarker":
            try:
                if re.compile(value).match(""):
                    return default, "gapMarker must not match the empty string"
            except re.error as exc:
                return default, f"gapMarker is not a valid regular expression: {exc}"
        return value, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default, f"{name} must be a number"
    lo, hi = bounds[name]
    if isinstance(value, float) and value != value:
        return default, f"{name} must be a number, not NaN"
    if not lo <= value <= hi:  # compared before float(): JSON integers can be too large for a float
        return default, f"{name} must be between {lo} and {hi}, not {str(value)[:40]}"
    if isinstance(default, int) and not float(value).is_integer():
        return default, f"{name} must be a whole number"
    return type(default)(value), None


def parse_settings(raw, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Merge ``raw`` (a dict, possibly under a "diffill" key) over ``base``; bad values keep their default."""
    base = base or Settings()
    problems: list[str] = []
    if raw is None:
        return base, problems
    if isinstance(raw, dict) and isinstance(raw.get("diffill"), dict):
        raw = raw["diffill"]
    if not isinstance(raw, dict):
        return base, [f"settings must be an object, not {type(raw).__name__}"]
    known = {f.name: f for f in fields(Settings)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(f"unknown setting {key!r} ignored")
            continue
        default = known[key].default
        good, problem = _check(key, value, default)
        if problem:
            problems.append(f"{problem}; using {default!r}")
        values[key] = good
    merged = {f.name: values.get(f.name, getattr(base, f.name)) for f in fields(Settings)}
    return Settings(**merged), problems
