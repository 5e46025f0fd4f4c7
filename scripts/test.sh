#!/usr/bin/env bash
# The test command (README): install what is missing, start the services the tests talk to
# (PostgreSQL on 127.0.0.1:5432, a real Label Studio on 127.0.0.1:$LS_PORT), run pytest, stop Label Studio.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

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
