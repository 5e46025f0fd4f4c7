"""The real Label Studio the ``labelstudio`` tests talk to, and the rule for when it is missing.

scripts/test.sh starts a server and exports ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` and
``ACTIVEADV_REQUIRE_LABEL_STUDIO=1``: then a missing server fails the run instead of skipping silently.
"""

from __future__ import annotations

import os

import pytest

URL = os.environ.get("LABEL_STUDIO_URL")
TOKEN = os.environ.get("LABEL_STUDIO_API_KEY")
FILES_ROOT = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
REQUIRED = os.environ.get("ACTIVEADV_REQUIRE_LABEL_STUDIO") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, but fail when the run requires Label Studio."""
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(reason)


def require_server() -> None:
    require(bool(URL and TOKEN), "needs a running Label Studio: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
            "(e.g. `activeadv labelstudio start --port 8089`)")
