"""bench/gpu_check.py, the prepared GPU run, kept working without a GPU: its --dry-run runs every step on the CPU
at tiny sizes (under 60 s), a step over its time box is ended and the next one still runs, and bad input is one
line with exit status 2."""
import json
import subprocess
import sys
import time

from conftest import ROOT, assert_user_error

SCRIPT = str(ROOT / "bench" / "gpu_check.py")
STEPS = ["supernet_step", "compile", "latency_b1", "latency_b64", "retrain", "memory", "pytest_cuda", "search"]


def _gpu_check(*args, timeout=170):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_dry_run_runs_every_step_on_the_cpu_and_writes_their_figures_to_one_json_in_under_60_s(tmp_path):
    out = tmp_path / "figures.json"
    t0 = time.time()
    proc = _gpu_check("--dry-run", "--out", str(out))
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "dry-run" and data["torch"] and data["budget_s"] == 480
    steps = data["steps"]
    assert list(steps) == STEPS and {s["status"] for s in steps.values()} == {"ok"}, {k: (s["status"], s.get("error")) for k, s in steps.items()}
    fig = {k: s["figures"] for k, s in steps.items()}
    assert fig["supernet_step"]["ratio"] > 0 and fig["supernet_step"]["sandwich_0"]["extracted_ms"] > 0
    assert fig["supernet_step"]["channels_last_supernet_ms"] > 0 and fig["supernet_step"]["contiguous_supernet_ms"] > 0
    assert fig["compile"]["extracted_compiled_ms"] > 0 and fig["compile"]["supernet_compiled_ms"] > 0 and "supernet_compile_s" in fig["compile"]
    for name, batch in (("latency_b1", 1), ("latency_b64", 2)):
        assert fig[name]["batch_size"] == batch and fig[name]["parts"] > 10 and fig[name]["held_out_archs"] == 4
        assert -1 <= fig[name]["spearman"] <= 1 and fig[name]["mape"] >= 0
    assert fig["retrain"]["ratio"] > 0 and fig["retrain"]["deit_small_patch16_224_gmacs"] > 0
    assert fig["memory"]["cpu_peak_rss_mib"] > 0
    # every test marked cuda is collected, and skipped on this machine without CUDA
    assert "test_cuda.py" in fig["pytest_cuda"]["files"] and fig["pytest_cuda"]["tests"] >= 4
    assert fig["pytest_cuda"]["skipped"] == fig["pytest_cuda"]["tests"]
    assert fig["search"]["trials"] == 2 and fig["search"]["trials_on"] == "cpu" and fig["search"]["devices_line"].startswith("devices:")
    assert ", 1 threads)" in fig["search"]["devices_line"]  # beside the worker's steps: one thread each (2 oversubscribed 2 cores)
    assert "goals" not in data  # the goals are judged on a GPU run only
    for name in STEPS:
        assert f"== {name}: ok" in proc.stdout
    assert seconds < 60, seconds


def test_a_step_over_its_time_box_is_ended_and_the_next_step_still_runs(tmp_path):
    out = tmp_path / "figures.json"
    proc = _gpu_check("--dry-run", "--only", "compile,memory", "--box", "compile=0.5", "--out", str(out))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    steps = json.loads(out.read_text())["steps"]
    assert steps["compile"]["status"] == "timed out" and "over its 0.5 s box" in steps["compile"]["error"]
    assert steps["compile"]["seconds"] < 5
    assert steps["memory"]["status"] == "ok" and steps["memory"]["figures"]["cpu_peak_rss_mib"] > 0
    assert "failed: compile" in proc.stdout.splitlines()[-1]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    assert_user_error(_gpu_check("--dry-run", "--only", "warp_drive"), "--only", "warp_drive", "supernet_step")
    assert_user_error(_gpu_check("--dry-run", "--box", "compile=soon"), "--box", "compile=soon")
    assert_user_error(_gpu_check("--dry-run", "--budget", "0"), "--budget")
    if not __import__("torch").cuda.is_available():
        assert_user_error(_gpu_check("--out", str(tmp_path / "x.json")), "no CUDA device", "--dry-run")
        assert not (tmp_path / "x.json").exists()
