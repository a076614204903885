"""The Diffill language server with one injected fault, for tests: a fill whose text contains
``INJECT_FAULT`` raises in the middle of denoising, after its first step (as a model bug, an out-of-memory
or a corrupt weight read would).  Everything else is the real server.

    python tests/fault_server.py [diffill serve options]
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusion_core.infer import engine as engine_module  # noqa: E402

TRIGGER = "INJECT_FAULT"


def _faulty(on_step):
    def step(step, total, ids):
        if on_step is not None:
            on_step(step, total, ids)
        raise RuntimeError(f"injected fault at step {step} of {total}")
    return step


def _inject(method, texts_of, on_step_index):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if any(TRIGGER in t for t in texts_of(args, kwargs)):
            if "on_step" in kwargs or len(args) <= on_step_index:
                kwargs["on_step"] = _faulty(kwargs.get("on_step"))
            else:
                args = args[:on_step_index] + (_faulty(args[on_step_index]),) + args[on_step_index + 1:]
        return method(self, *args, **kwargs)
    return wrapper


E = engine_module.InfillEngine
# fill(prefix, suffix, length, candidates, on_step, settings); fill_gaps(pieces, lengths, candidates, on_step, ...)
E.fill = _inject(E.fill, lambda a, k: [*(a[:2]), k.get("prefix", ""), k.get("suffix", "")], 4)
E.fill_gaps = _inject(E.fill_gaps, lambda a, k: list(a[0] if a else k.get("pieces", [])), 3)

if __name__ == "__main__":
    from server.__main__ import main
    sys.exit(main())
