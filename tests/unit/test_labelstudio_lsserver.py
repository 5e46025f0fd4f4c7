"""``activeadv.lsserver`` without starting Label Studio: paths, secrets, failure messages, CLI help."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from activeadv import lsserver
from activeadv.cli import cli
from activeadv.errors import LabelStudioError
from activeadv.processes import healthy


def test_home_comes_from_activeadv_home(tmp_path):
    env = {"ACTIVEADV_HOME": str(tmp_path)}
    assert lsserver.activeadv_home(env) == tmp_path
    assert lsserver.venv_dir(tmp_path) == tmp_path / "ls-venv"
    assert lsserver.default_data_dir(tmp_path) == tmp_path / "ls-data"


def test_secret_file_is_private_and_kept_across_calls(tmp_path):
    path = tmp_path / "d" / "token"
    first = lsserver._secret_file(path, None)
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lsserver._secret_file(path, None) == first  # a restart keeps it
    assert lsserver._secret_file(path, "given-token") == "given-token"  # an explicit token wins
    assert lsserver.read_token(tmp_path / "d") == "given-token"


def test_start_without_install_is_a_one_line_error(tmp_path):
    cfg = lsserver.ServerConfig(data_dir=tmp_path / "data", home=tmp_path / "nohome")
    with pytest.raises(LabelStudioError, match="not installed.*labelstudio install"):
        lsserver.start(cfg)


def test_config_repr_hides_secrets(tmp_path):
    cfg = lsserver.ServerConfig(data_dir=tmp_path, token="very-secret-token", password="hunter2hunter2")
    assert "very-secret" not in repr(cfg) and "hunter2" not in repr(cfg)
    assert cfg.url == "http://127.0.0.1:8080"


def test_stop_and_status_without_a_server(tmp_path):
    assert lsserver.stop(tmp_path) is False
    state = lsserver.status(tmp_path)
    assert state["running"] is False and state["healthy"] is False


def test_stop_terminates_the_process_of_the_pid_file(tmp_path):
    # a stand-in "server" in its own session, as start() launches the real one
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    (tmp_path / "server.pid").write_text(f"{proc.pid}\n")
    assert lsserver.stop(tmp_path, timeout=10) is True
    # stop() reaps its own children, so Popen may find the status already collected (it then reports 0):
    # what matters is that the process is gone, not the exit code that is left to read.
    proc.wait(timeout=10)
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    assert not (tmp_path / "server.pid").exists()


def test_stale_pid_file_is_cleaned(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "server.pid").write_text(f"{proc.pid}\n")
    assert lsserver.stop(tmp_path) is False and not (tmp_path / "server.pid").exists()


def test_health_of_a_closed_port_is_false():
    assert healthy("http://127.0.0.1:1", timeout=0.5) is False


@pytest.mark.parametrize("args", [["labelstudio", "--help"], ["labelstudio", "start", "--help"], ["push", "--help"],
                                  ["sync", "--help"], ["annotate-sim", "--help"], ["labelstudio", "link", "--help"]])
def test_every_command_has_help(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "Usage" in result.output


def test_status_command_exits_1_when_no_server(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIVEADV_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["labelstudio", "status"])
    assert result.exit_code == 1 and "stopped" in result.output


def test_stop_command_without_server(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIVEADV_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["labelstudio", "stop"])
    assert result.exit_code == 0 and "no Label Studio server" in result.output


def test_push_without_url_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIVEADV_HOME", str(tmp_path))
    monkeypatch.setenv("ACTIVEADV_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    for var in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ACTIVEADV_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "demo", "--dataset", "digits", "-q"]).exit_code == 0
    result = runner.invoke(cli, ["labelstudio", "link"])
    assert result.exit_code == 1 and "no Label Studio URL" in result.output
    result = runner.invoke(cli, ["labelstudio", "link", "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 1 and "unreachable" in result.output  # a down server is said first
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Up(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Up) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            result = runner.invoke(cli, ["labelstudio", "link", "--url", f"http://127.0.0.1:{server.server_port}"])
        finally:
            server.shutdown()
    assert result.exit_code == 1 and "LABEL_STUDIO_API_KEY" in result.output  # reachable: then the token
    assert os.environ.get("LABEL_STUDIO_API_KEY") is None


def test_a_second_token_never_replaces_the_one_the_server_was_created_with(tmp_path, caplog):
    data = tmp_path / "ls"
    assert lsserver.server_token(data, "first-token-123\n") == "first-token-123"  # a pasted newline is dropped
    with caplog.at_level("WARNING"):
        assert lsserver.server_token(data, "other-token-456") == "first-token-123"
    assert "keeping it" in caplog.text and "other-token-456" not in caplog.text
    assert lsserver.read_token(data) == "first-token-123"
    with pytest.raises(LabelStudioError, match="longer than 5"):
        lsserver.server_token(data, "abc")
    assert lsserver.read_token(data) == "first-token-123"  # the short one was never written
    assert lsserver.server_token(data, None) == "first-token-123"


def test_a_port_held_by_another_program_is_refused_at_once(tmp_path):
    import socket

    exe = lsserver.label_studio_bin(tmp_path / "home")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 1\n")  # never reached: the port check comes first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = lsserver.ServerConfig(data_dir=tmp_path / "data", home=tmp_path / "home", port=port)
        with pytest.raises(LabelStudioError, match=f"127.0.0.1:{port}.*another program holds it"):
            lsserver.start(cfg, timeout=5)
    assert not (tmp_path / "data" / "server.pid").exists()  # nothing was started
