"""Background processes this tool starts or watches (Label Studio, ``activeadv serve``) and the round lock's holder.

One copy of the checks they all need: is a pid alive, does a server answer ``/health``, is a port free.
"""

from __future__ import annotations

import os
import socket

from activeadv.errors import ActiveAdvError


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie child of ours (exited, not reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET URL/health`` answers ``{"status": "UP"}`` (Label Studio's answer; the service gives the same)."""
    import httpx

    try:
        resp = httpx.get(url.rstrip("/") + "/health", timeout=timeout)
        return resp.status_code == 200 and resp.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def check_port_free(host: str, port: int, error: type[ActiveAdvError] = ActiveAdvError) -> None:
    """Say at once that another program holds the port (a server would die later, half-way through its start)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise error(f"cannot use {host}:{port} ({exc.strerror or exc}): another program holds it; "
                        "pick another --port") from None
