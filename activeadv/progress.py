"""Progress bars for long loops (training, scoring, pushing, waiting for labels).

One rule for all of them: shown when the caller asks *and* stderr is a
terminal.  tqdm's ``disable=None`` does the terminal check; without it, output
piped into a log or CI was littered with carriage-return residue.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def bar(show: bool, iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, off unless ``show`` and stderr is a TTY."""
    return tqdm(iterable, disable=None if show else True, **kwargs)
