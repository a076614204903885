"""Issue 14, item 11: the tests write only to temporary dirs, not into the user's server log (which
``:Diffill log`` shows) nor over tracked evidence such as ``benchmarks/results/storm.json``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from conftest import LOG_DIR, session_model
from rawlsp import RawClient

ROOT = Path(__file__).resolve().parent.parent
MODEL = session_model("tiny")


def _open_logs(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.endswith("server.log"):
            found.add(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_server_started_by_the_tests_logs_under_the_temporary_dir():
    c = RawClient(["--model", MODEL])  # no environment of its own: what every test's server inherits
    try:
        c.initialize()
        status = c.response(c.request("workspace/executeCommand", {"command": "diffill.status"}))
        logs = _open_logs(status["result"]["pid"])
    finally:
        c.close()
    assert logs == {str(LOG_DIR / "server.log")}
    assert Path(tempfile.gettempdir()).resolve() in LOG_DIR.resolve().parents
    assert "Diffill server starting" in (LOG_DIR / "server.log").read_text(encoding="utf-8")


def test_the_storm_tests_write_no_evidence_unless_asked():
    import test_storm
    if os.environ.get("DIFFILL_RESULTS_DIR"):
        pytest.skip("DIFFILL_RESULTS_DIR is set: this run is asked for the storm evidence")
    tracked = ROOT / "benchmarks" / "results" / "storm.json"
    before = tracked.read_bytes()
    test_storm.record("isolation-check", {"rss_kb": 0})
    assert test_storm.RESULTS is None and tracked.read_bytes() == before
