"""The test suite's own guards (tests/conftest.py): it blames itself for the shared Ray cluster file only when a
process it started serves the address written there, never rewrites or deletes that file (another user's cluster
may have written it), and runs its Ray in a temp dir of its own."""
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import SESSION_MARKER, _file_state, suite_wrote_cluster_file

LISTEN = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
          "print(s.getsockname()[1], flush=True); time.sleep(120)")


def _listener(marker: str | None) -> tuple[subprocess.Popen, int]:
    """A process listening on a loopback port (as a Ray head does), carrying `marker` as its session marker or none."""
    env = {k: v for k, v in os.environ.items() if k != SESSION_MARKER}
    if marker:
        env[SESSION_MARKER] = marker
    proc = subprocess.Popen([sys.executable, "-c", LISTEN], env=env, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_a_cluster_file_another_program_rewrote_or_deleted_is_neither_blamed_nor_touched(tmp_path):
    marker = f"guard-test-{time.time_ns()}"
    cluster_file = tmp_path / "ray" / "ray_current_cluster"
    cluster_file.parent.mkdir()
    cluster_file.write_text("127.0.0.1:6379")
    before = _file_state(cluster_file)
    assert suite_wrote_cluster_file(cluster_file, before, marker) is None  # unchanged
    other, port = _listener(marker=None)  # another user's head, started while the suite runs
    try:
        cluster_file.write_text(f"127.0.0.1:{port}")
        after = _file_state(cluster_file)
        assert after != before
        assert suite_wrote_cluster_file(cluster_file, before, marker) is None
        assert _file_state(cluster_file) == after  # read, not put back
    finally:
        other.kill()
        other.wait()
    cluster_file.unlink()  # another user's `ray stop`
    assert suite_wrote_cluster_file(cluster_file, before, marker) is None
    assert not cluster_file.exists()


def test_a_cluster_file_naming_a_head_the_suite_started_is_blamed_with_the_reason_and_left_as_it_is(tmp_path):
    marker = f"guard-test-{time.time_ns()}"
    cluster_file = tmp_path / "ray" / "ray_current_cluster"
    cluster_file.parent.mkdir()
    ours, port = _listener(marker)
    try:
        cluster_file.write_text(f"127.0.0.1:{port}\n")
        after = _file_state(cluster_file)
        reason = suite_wrote_cluster_file(cluster_file, None, marker)
        assert reason is not None
        for part in (f"127.0.0.1:{port}", f"pid {ours.pid}", str(cluster_file), "RAY_TMPDIR"):
            assert part in reason, (part, reason)
        assert _file_state(cluster_file) == after
        assert suite_wrote_cluster_file(cluster_file, None, f"{marker}-another-session") is None  # another session's head
    finally:
        ours.kill()
        ours.wait()


def test_the_suite_runs_ray_in_a_temp_dir_of_its_own():
    from ray._common.utils import get_ray_address_file

    own = os.environ.get("RAY_TMPDIR")
    assert own and Path(own).is_dir() and Path(own).parent == Path("/tmp") and Path(own).name.startswith("r")
    assert Path(get_ray_address_file(None)) == Path(own) / "ray" / "ray_current_cluster"  # where a `ray start` of a test writes
