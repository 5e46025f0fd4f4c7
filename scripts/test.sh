#!/usr/bin/env bash
# The test command (README): install what is missing (the venv, Label Studio, Debian's chromium), start the
# services the tests talk to (PostgreSQL on 127.0.0.1:5432, a real Label Studio on 127.0.0.1:$LS_PORT), run pytest,
# stop Label Studio. Screenshots of the browser test land in ./test-artifacts/browser.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the Ray extra: tests/unit/test_ray_executor.py starts a local Ray cluster (the product runs without Ray)
.venv/bin/python -c "import ray" 2>/dev/null \
  || .venv/bin/python -m pip install -q -e ".[dev,ray]" 2>&1 | grep -v "^WARNING: Location" || true

# Chromium for the annotator's flow in a real browser (tests/integration/test_browser.py): Debian's package,
# driven by Playwright for Python (dev extra). `playwright install` is never run: its download cannot work here.
if [ ! -x "${ACTIVEADV_CHROMIUM:-/usr/bin/chromium}" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium (apt-get) for the browser test" >&2
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "WARNING: could not install chromium; the browser test will fail (ACTIVEADV_REQUIRE_LABEL_STUDIO=1)" >&2
  fi
fi
# screenshots of the browser test's key steps (kept after the run; not committed)
export ACTIVEADV_TEST_ARTIFACTS=${ACTIVEADV_TEST_ARTIFACTS:-$PWD/test-artifacts}

# PostgreSQL: this machine kind runs it; start it when it is down, refuse to go on silently without it.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && break; sleep 1; done
fi
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  export ACTIVEADV_REQUIRE_POSTGRES=1   # the PostgreSQL tests must run, not skip
else
  echo "WARNING: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will be skipped" >&2
fi

# Label Studio: its own virtualenv (it pins its own deps), a throw-away data dir, a preset token.
export ACTIVEADV_HOME=${ACTIVEADV_HOME:-$HOME/.activeadv}
if [ -z "${LS_PORT:-}" ]; then  # 8089 unless taken (another server of yours), then any free port
  LS_PORT=$(.venv/bin/python -c "import socket
s = socket.socket()
try:
    s.bind(('127.0.0.1', 8089))
except OSError:
    s.bind(('127.0.0.1', 0))
print(s.getsockname()[1])")
fi
LS_DATA=$(mktemp -d /tmp/activeadv-ls-test.XXXXXX)
LS_FILES=$(mktemp -d /tmp/activeadv-ls-files.XXXXXX)
export LABEL_STUDIO_API_KEY=${LABEL_STUDIO_API_KEY:-activeadv-ci-$(date +%s)-$RANDOM}
.venv/bin/activeadv labelstudio install --version "${LABEL_STUDIO_VERSION:-1.23.2}"
stop_ls() { .venv/bin/activeadv labelstudio stop --data-dir "$LS_DATA" >/dev/null 2>&1 || true; rm -rf "$LS_DATA" "$LS_FILES"; }
trap stop_ls EXIT
.venv/bin/activeadv labelstudio start --port "$LS_PORT" --data-dir "$LS_DATA" --files-root "$LS_FILES" >/dev/null
export LABEL_STUDIO_URL="http://127.0.0.1:$LS_PORT"
export ACTIVEADV_TEST_LS_DATA="$LS_DATA"  # the tests check what the server left there (permissions)
export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$LS_FILES"
export ACTIVEADV_REQUIRE_LABEL_STUDIO=1  # the real-server tests must run, not skip

# lint and types first: seconds, and a failure here names the line
.venv/bin/ruff check activeadv tests scripts migrations
.venv/bin/mypy
.venv/bin/python -m pytest tests "$@"
