"""scripts/quickstart.sh parses its modes before installing anything (the full --serve run is by hand: it installs
and starts Label Studio; see docs/labelstudio.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "quickstart.sh"


def quickstart(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


def test_help_lists_every_mode_and_setting():
    out = quickstart("--help")
    assert out.returncode == 0
    for word in ("--auto N", "--serve", "--stop", "QS_SERVE_PORT", "LS_PORT", "QS_TRAIN_ARGS"):
        assert word in out.stdout, word
    assert "set -euo" not in out.stdout  # the help is the header comment, not the code


def test_unknown_arguments_are_refused_before_any_install():
    out = quickstart("--serve", "--bogus")
    assert out.returncode == 2 and "unknown argument '--bogus'" in out.stderr
    out = quickstart("--auto", "x")
    assert out.returncode == 2 and "whole number" in out.stderr
