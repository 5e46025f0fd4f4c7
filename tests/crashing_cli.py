"""``python tests/crashing_cli.py PHASE activeadv-args...``: the CLI, killed like ``kill -9`` right after PHASE.

Crash injection lives here, not in the library: it wraps ``loop.run_round``'s ``on_phase`` observer and ends the
process with ``os._exit(75)`` (no cleanup, no lock release) once the round has stored that phase.
"""

from __future__ import annotations

import os
import sys

from activeadv import loop
from activeadv.cli import main

CRASH_EXIT = 75


def _crashing(run_round, phase: str):
    def wrapped(*args, on_phase=None, **kwargs):
        def observe(done: str) -> None:
            if on_phase is not None:
                on_phase(done)
            if done == phase:
                os._exit(CRASH_EXIT)

        return run_round(*args, on_phase=observe, **kwargs)

    return wrapped


if __name__ == "__main__":
    target = sys.argv.pop(1)
    if target not in loop.PHASES:
        sys.exit(f"unknown phase {target!r}: one of {', '.join(loop.PHASES)}")
    loop.run_round = _crashing(loop.run_round, target)
    sys.argv[0] = "activeadv"
    main()
