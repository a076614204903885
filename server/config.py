"""The language server's settings: the fields of ``diffusion_core.settings.SETTINGS``, validated.

Settings arrive as ``initializationOptions``, from ``workspace/configuration``
(section ``diffill``) and with ``workspace/didChangeConfiguration``.  A bad
value never fails a request or ``initialize``: it is reported (see
``parse_settings``'s messages, shown with ``window/showMessage``) and replaced
by its default.  Names, defaults and bounds live in the schema, not here.
"""
from __future__ import annotations

from dataclasses import field, fields, make_dataclass

from diffusion_core.settings import BY_NAME, SETTINGS


def _language_enabled(self, language_id: str | None) -> bool:
    lang = language_id or ""
    if lang in self.disabledLanguages:
        return False
    return "*" in self.enabledLanguages or lang in self.enabledLanguages


# One frozen field per schema entry (settings.model, settings.maxTokens, ...), with the schema's default.
Settings = make_dataclass("Settings", [(s.name, type(s.default), field(default=s.default)) for s in SETTINGS],
                          frozen=True, namespace={"language_enabled": _language_enabled,
                                                  "__doc__": "The server's settings (diffusion_core/settings.py)."})


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
    values = {}
    for key, value in raw.items():
        if key not in BY_NAME:
            problems.append(f"unknown setting {key!r} ignored")
            continue
        good, problem = BY_NAME[key].check(value)
        if problem:
            problems.append(f"{problem}; using {BY_NAME[key].default!r}")
        values[key] = good
    merged = {f.name: values.get(f.name, getattr(base, f.name)) for f in fields(Settings)}
    return Settings(**merged), problems
