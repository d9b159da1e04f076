import contextlib
import importlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces import Scale, get_space

ROOT = Path(__file__).resolve().parents[1]

# Tiny scales: the same architectures at a size a 2-core CPU runs in milliseconds.
TINY = {
    "psvit": Scale(name="tiny", img_size=16, stem_stride=2, embed_dims=(16, 32, 64), num_heads=(1, 2, 2), num_classes=5),
    "psvit_ext": Scale(name="tiny", img_size=16, stem_stride=2, embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 2), num_classes=5),
}


SESSION_MARKER = "PSVIT_NAS_TEST_SESSION"


def _marked_processes(marker: str) -> list:
    """The live processes whose environment carries this test session's marker: every process the suite started,
    directly or not (a Ray process inherits the environment of whatever started it), wherever it was reparented."""
    import psutil

    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get(SESSION_MARKER) == marker and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _listeners(procs, port: int) -> list:
    """Those of `procs` with a TCP socket listening on `port`."""
    import psutil

    found = []
    for p in procs:
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in p.net_connections(kind="tcp")):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _file_state(path: Path):
    """What tells a rewrite of `path`: its content, inode and modification time (None if it does not exist)."""
    try:
        st = path.stat()
        return path.read_bytes(), st.st_ino, st.st_mtime_ns
    except OSError:
        return None


def suite_wrote_cluster_file(cluster_file: Path, before, marker: str) -> str | None:
    """Why the test suite is to blame for `cluster_file` (where `ray start` records the cluster: shared by every user
    of this machine) having changed since `before` (its _file_state), or None when the suite did not change it or
    another program did. Only what the suite started counts: the file must name an address on which a process
    carrying this session's marker listens, i.e. a `ray start` head of the suite. The file is only read, never
    written or deleted: another user's cluster may have written it meanwhile."""
    now = _file_state(cluster_file)
    if now is None or now == before:
        return None
    address = now[0].decode(errors="replace").strip()
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    heads = _listeners(_marked_processes(marker), int(port))
    if not heads:
        return None
    who = ", ".join(f"pid {p.pid} ({' '.join(p.cmdline())[:80]})" for p in heads)
    return (f"the test suite's own Ray head at {address} ({who}) wrote {cluster_file}, which every user's `ray start` "
            "shares: a test started Ray without the session's RAY_TMPDIR (give it its own, as tests/test_cluster.py does); "
            "the file is left as it is")


@pytest.fixture(scope="session", autouse=True)
def _leaves_no_ray_behind():
    """After the whole suite, no process it started is alive, and it did not write the file in which `ray start`
    records the cluster (/tmp/ray/ray_current_cluster), which another user's cluster on this machine may also write
    while the suite runs. By construction: the suite's processes get a Ray temp dir of their own (RAY_TMPDIR, a
    short path under /tmp for Ray's socket paths), so a `ray start` or ray.init of the suite records its cluster
    there; and the shared file is checked for an address the suite's own processes serve (a test that gave Ray
    another temp dir). That file is never rewritten or deleted here; the suite fails with the reason instead.
    Processes it left are ended before the failure is reported."""
    import shutil
    import tempfile
    import time

    marker = f"{os.getpid()}-{time.time_ns()}"
    os.environ[SESSION_MARKER] = marker
    shared = Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"
    before = _file_state(shared)
    saved_tmp = os.environ.get("RAY_TMPDIR")
    own_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    os.environ["RAY_TMPDIR"] = own_tmp
    yield
    blame = suite_wrote_cluster_file(shared, before, marker)  # while the processes that could explain it still run
    if importlib.util.find_spec("ray") is not None:
        from nas.cluster import stop_ray

        stop_ray()  # the suite's in-process Ray instance, if a test started one, and its watchdog
    deadline = time.time() + 30
    while (left := _marked_processes(marker)) and time.time() < deadline:
        time.sleep(0.5)
    names = [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in left if p.is_running()]
    for p in left:
        with contextlib.suppress(Exception):
            p.kill()
    if saved_tmp is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = saved_tmp
    shutil.rmtree(own_tmp, ignore_errors=True)
    problems = [f"processes started by the test suite outlived it: {names}"] * bool(names) + [blame] * bool(blame)
    assert not problems, "; ".join(problems)


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped where no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked cuda)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=sorted(TINY))
def space_name(request):
    return request.param


@pytest.fixture
def space(space_name):
    return get_space(space_name)


@pytest.fixture
def tiny(space_name):
    return TINY[space_name]


def toy_npz(path, n_train: int = 96, n_test: int = 24, side: int = 16, signal: float = 90) -> str:
    """A learnable toy set of side x side images, 3 classes told apart by their mean colour (`signal` added to the
    class's channel, against per-pixel noise of std 30); its --data spec."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(80, 30, (n, side, side, 3))
        x[np.arange(n), :, :, y] += signal
        return x.clip(0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def toy_image_folder(root, classes: int = 3, per_class: int = 24, side: int = 16) -> str:
    """An ImageFolder tree (train/ and val/) of side x side PNGs, classes told apart by their colour; its --data spec."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", max(2, per_class // 4))):
        for c in range(classes):
            folder = Path(root) / split / f"class{c}"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.normal(80, 30, (side, side, 3))
                pixels[..., c % 3] += 90
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{k}.png")
    return f"folder:{root}"


def run_module(module: str, *args: str, cwd=None, timeout=300):
    """Run `python -m module args` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout)


def run_main(module: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    """`module.main(args)` in this process, as `python -m module args` would run it from `cwd`: its exit status
    and what it printed. For the cases that stop before any real work (argument checking)."""
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def assert_user_error(proc, *fragments: str):
    """Exit status 2, no traceback, one line on stderr containing every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def kill_at_line(args, prefix: str, cwd) -> None:
    """Run `python -m args` and SIGKILL its whole process group as soon as it prints a line starting with `prefix`."""
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if line.startswith(prefix):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    assert proc.wait() == -signal.SIGKILL, f"the run ended before printing {prefix!r}"
