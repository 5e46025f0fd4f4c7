"""Capture a Label Studio task as an annotator sees it: headless chromium driven over the DevTools protocol.

Proof that annotators see the image, the choices and the model's pre-filled
prediction (docs/labelstudio-annotator.png was made with it).  Not part of the
package; needs Debian's ``chromium`` and ``pip install websocket-client httpx``.

    python scripts/labelstudio_screenshot.py --url http://127.0.0.1:8080 --email admin@activeadv.local \
        --password-file ~/.activeadv/ls-data/admin-password --project 3 --task 12 --out task.png

``--screenshot`` alone cannot log in, so this logs in with a form POST, hands
the ``sessionid`` cookie to chromium through ``Network.setCookie`` and captures.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import websocket  # websocket-client


def login(url: str, email: str, password: str) -> str:
    """The ``sessionid`` cookie of a form login (csrf token from the login page)."""
    with httpx.Client(base_url=url, follow_redirects=False) as http:
        page = http.get("/user/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not match:
            raise SystemExit("no csrf token on the login page")
        http.post("/user/login/", data={"csrfmiddlewaretoken": match.group(1), "email": email, "password": password},
                  headers={"Referer": url + "/user/login/"})
        session = http.cookies.get("sessionid")
    if not session:
        raise SystemExit("login failed: check e-mail and password")
    return session


def capture(url: str, session: str, path: str, out: Path, *, wait: float = 12.0, port: int = 9333) -> None:
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                                    f"--remote-debugging-port={port}", "--window-size=1400,900",
                                    f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pages = None
            for _ in range(100):
                try:
                    pages = httpx.get(f"http://127.0.0.1:{port}/json").json()
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            if not pages:
                raise SystemExit("chromium did not open its debugging port")
            ws = websocket.create_connection(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
            counter = 0

            def call(method: str, **params):
                nonlocal counter
                counter += 1
                ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv())
                    if msg.get("id") == counter:
                        return msg.get("result")

            host = httpx.URL(url).host
            call("Network.enable")
            call("Network.setCookie", name="sessionid", value=session, domain=host, path="/")
            call("Page.navigate", url=url + path)
            time.sleep(wait)  # the editor is a single-page app: give it time to load the task and image
            out.write_bytes(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
        finally:
            browser.terminate()
            browser.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password-file", type=Path, required=True, help="file holding the password (not argv)")
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--task", type=int, required=True)
    parser.add_argument("--out", type=Path, default=Path("labelstudio-task.png"))
    args = parser.parse_args()
    url = args.url.rstrip("/")
    session = login(url, args.email, args.password_file.expanduser().read_text().strip())
    capture(url, session, f"/projects/{args.project}/data?task={args.task}", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
