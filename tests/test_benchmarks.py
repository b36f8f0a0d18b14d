"""Benchmarks that cannot rot: each one with a --smoke mode runs here, in seconds."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_online_probe_benchmark_smoke(tmp_path):
    out = tmp_path / "probe.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "online_probe.py"), "--smoke", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "GFLOP/s" in result.stdout and "% of an unprobed epoch" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["matmul_gflops"] > 0 and figures["probe_seconds"] > 0 and figures["epoch_seconds"] > 0
