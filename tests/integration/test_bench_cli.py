"""`activeadv bench` through CliRunner and a real subprocess, on digits with tiny sizes (no timings asserted)."""

import json
import subprocess
import sys

from click.testing import CliRunner

from activeadv.cli import cli

CLI = [sys.executable, "-c", "from activeadv.cli import main; main()"]
TINY = ["--dataset", "digits", "--labels", "60", "--train-steps", "10", "--threads", "1", "-q"]


def test_bench_scoring_json_fields():
    methods = "forward,forward+backward,entropy,first-order-margin,dfal-exact,dfal-fast"
    result = CliRunner().invoke(cli, ["bench", "scoring", *TINY, "--pool", "150", "--repeats", "2", "--top", "0.05",
                                      "--third-party", "0", "--methods", methods, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["benchmark"] == "scoring" and data["pool"] == 150 and data["top_n"] == 8
    assert data["unit"] == "forward+backward" and data["reference"] == "dfal-exact"
    assert {"cpu", "torch", "torch_threads", "device"} <= set(data["machine"])
    assert data["machine"]["torch_threads"] == 1
    assert data["model"]["parameters"] > 0 and 0 <= data["model"]["test_accuracy"] <= 1
    rows = {row["method"]: row for row in data["rows"]}
    assert list(rows) == methods.split(",")
    for row in rows.values():
        assert row["images_per_s"] > 0 and len(row["runs"]) == 2
        assert row["spread"][0] <= row["images_per_s"] <= row["spread"][1]
        assert row["ratio_to_unit"] > 0
    assert rows["dfal-exact"]["top_n_overlap"] == 1.0
    assert 0 <= rows["dfal-fast"]["top_n_overlap"] <= 1
    assert "mode=fast" in rows["dfal-fast"]["strategy"]
    assert "top_n_overlap" not in rows["forward"]


def test_bench_scoring_rejects_unknown_methods():
    result = CliRunner().invoke(cli, ["bench", "scoring", *TINY, "--methods", "forward,warp-drive"])
    assert result.exit_code != 0 and "warp-drive" in result.output


def test_bench_round_json_phases():
    result = CliRunner().invoke(cli, ["bench", "round", "--dataset", "digits", "--strategy", "dfal", "--pool", "200",
                                      "--initial", "20", "--query", "5", "--rounds", "2", "--epochs", "1",
                                      "--min-steps", "5", "--unlabeled-steps", "5", "--threads", "1", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["labels"] for r in data["rounds"]] == [20, 25]
    assert set(data["phases"]) == {"train", "evaluate", "score", "select", "total"}
    assert all(r["seconds"]["score"] > 0 for r in data["rounds"])


def test_bench_help_in_a_real_process():
    out = subprocess.run([*CLI, "bench", "scoring", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--repeats" in out.stdout and "--json" in out.stdout
