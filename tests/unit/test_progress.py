"""Progress bars appear on a terminal only: piped output (logs, CI) gets no carriage-return residue."""

import io
import sys

from activeadv.progress import bar


def test_bars_stay_off_when_stderr_is_not_a_terminal(monkeypatch):
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    for _ in bar(True, range(50), desc="scoring"):
        pass
    assert piped.getvalue() == ""


def test_bars_show_on_a_terminal_unless_asked_not_to(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Tty()
    monkeypatch.setattr(sys, "stderr", term)
    for _ in bar(True, range(5), desc="scoring"):
        pass
    assert "scoring" in term.getvalue()
    quiet = Tty()
    monkeypatch.setattr(sys, "stderr", quiet)
    for _ in bar(False, range(5), desc="scoring"):
        pass
    assert quiet.getvalue() == ""
