"""bench/kernels.py in --smoke mode: the whole script on tiny CPU shapes (Triton interpreter), as CI runs it."""
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_benchmark_smoke_mode_writes_complete_json(tmp_path):
    out = tmp_path / "kernels.json"
    result = subprocess.run([sys.executable, "-m", "bench.kernels", "--smoke", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke" and "--smoke" in report["command"] and report["commit"]
    assert report["machine"]["torch"] == __import__("torch").__version__
    assert report["correctness"] and all(check["ok"] for check in report["correctness"])
    sections = {row["section"] for row in report["rows"]}
    assert sections == {"slstm_sequence", "slstm_step", "mlstm_prefill", "mlstm_step"}
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["median_ms"] > 0 and math.isfinite(row["us_per_step"])
    providers = {row["provider"] for row in report["rows"]}
    assert {"ours_triton_bf16", "ours_triton+proj_bf16", "eager_ref_bf16", "ours_step_rows_eager",
            "ours_chunkwise_cs16", "ref_parallel"} <= providers
    assert "wrote" in result.stdout.splitlines()[-1]
