"""docker/compose.yaml stays valid and documented (no Docker engine here: the file is read, not run).

Every service's environment variable carries a comment: on its own line (``KEY: value  # why``) or above the
run of lines it belongs to (a documented block).  Every ``${VAR}`` the file reads from the host is listed in the
header.  ``serve`` answers its healthcheck on the port it is told to bind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (dev extra) reads the compose file")

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
TEXT = COMPOSE.read_text()
LINES = TEXT.splitlines()
DOC = yaml.safe_load(TEXT)
SERVICES = DOC["services"]


def env_names(service: dict) -> list[str]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return list(env)
    return [item.split("=", 1)[0] for item in env]


def service_lines(name: str) -> list[str]:
    """The lines of ``services.NAME``, from its key to the next service (or the next top-level key)."""
    start = LINES.index(f"  {name}:")
    end = next((i for i in range(start + 1, len(LINES)) if re.match(r"^( {2})?\S", LINES[i])
                and not LINES[i].lstrip().startswith("#")), len(LINES))
    return LINES[start:end]


def has_comment(line: str) -> bool:
    return re.search(r"\s#\s*\S", line) is not None


def documented(lines: list[str], key: str) -> bool:
    pattern = re.compile(rf"^\s+(- )?{re.escape(key)}[:=]")
    [at] = [i for i, line in enumerate(lines) if pattern.match(line)]
    if has_comment(lines[at]):
        return True
    for line in reversed(lines[:at]):  # up through the block of bare entries to the comment above it
        stripped = line.strip()
        if stripped.startswith("#"):
            return True
        if not stripped or stripped == "environment:" or has_comment(line):
            return False
    return False


def test_the_file_has_the_services_and_they_depend_on_healthy_ones():
    assert {"postgres", "labelstudio", "activeadv", "serve"} <= set(SERVICES)
    for name, service in SERVICES.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_environment_variable_is_documented(name):
    names = env_names(SERVICES[name])
    lines = service_lines(name)
    missing = [key for key in names if not documented(lines, key)]
    assert not missing, f"{name}: environment variables without a comment: {missing}"


def test_every_variable_read_from_the_host_is_listed_in_the_header():
    header = "\n".join(line for line in LINES[:next(i for i, line in enumerate(LINES) if line == "services:")]
                       if line.startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", TEXT))
    assert used, "the file reads no variable at all?"
    missing = sorted(v for v in used if not re.search(rf"^#\s+{v}\s", header, re.M))
    assert not missing, f"variables read from the environment but not explained in the header: {missing}"


def test_serve_is_checked_on_its_health_route_and_port():
    serve = SERVICES["serve"]
    command = serve["command"]
    assert command[0] == "serve" and "--register" in command
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # Label Studio calls it over the compose network
    check = " ".join(serve["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in check
    assert "ports" not in serve  # only Label Studio calls it; nothing published on the host
    env = serve["environment"]
    assert env["ACTIVEADV_WEBHOOK_SECRET"].startswith("${ACTIVEADV_WEBHOOK_SECRET:?")  # required, never a default
    assert SERVICES["labelstudio"]["environment"]["SSRF_PROTECTION_ENABLED"] == "false"  # or its webhooks are refused


def test_the_checker_sees_a_missing_comment():
    lines = ["  x:", "    environment:", "      A: 1  # why", "      # both of these", "      B: 2", "      C: 3",
             "", "      D: 4", "    environment:", "      E: 5"]
    assert [k for k in "ABCDE" if documented(lines, k)] == ["A", "B", "C"]
