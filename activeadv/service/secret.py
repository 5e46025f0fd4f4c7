"""The shared secret that Label Studio sends with every webhook (header) and ML-backend call (basic auth).

From ``ACTIVEADV_WEBHOOK_SECRET`` when set, else generated once into a 0600
file in the service's state dir (``$ACTIVEADV_HOME/serve/webhook-secret``).  It is compared in constant
time, never logged, never stored in the database and never printed.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from activeadv.errors import ConfigError

HEADER = "X-ActiveAdv-Secret"
ENV = "ACTIVEADV_WEBHOOK_SECRET"
BASIC_USER = "activeadv"


def secret_file(state_dir: Path) -> Path:
    return state_dir / "webhook-secret"


def load_secret(state_dir: Path, *, create: bool = True) -> str:
    """The secret: the environment's, else the file's, else (``create``) a new random one written 0600."""
    given = os.environ.get(ENV)
    if given is not None:
        given = given.strip()
        if len(given) < 16 or not all("!" <= ch <= "~" for ch in given):
            raise ConfigError(f"{ENV} must be at least 16 printable ASCII characters without spaces")
        return given
    path = secret_file(state_dir)
    if path.exists():
        text = path.read_text().strip()
        if text:
            return text
    if not create:
        raise ConfigError(f"no webhook secret: set {ENV} or start `activeadv serve` once to create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def authorized(headers: Mapping[str, str], secret: str) -> bool:
    """True when the request carries the secret: our header, or HTTP basic auth with it as the password.

    ``headers``: a case-insensitive mapping (Starlette's ``request.headers``).
    """
    get = headers.get
    given = get(HEADER.lower()) or get(HEADER)
    if given is not None:
        return hmac.compare_digest(str(given).encode(), secret.encode())
    auth = get("authorization") or ""
    if auth.lower().startswith("basic "):
        try:
            _, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), secret.encode())
    return False
