"""The Ray instance a search starts: loopback only, ignores RAY_ADDRESS, and leaves no process behind,
whether the search ends normally or its driver is killed with SIGKILL; a cluster named by --address that
does not answer is one line and exit 2, not a hang."""
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from conftest import ROOT, assert_user_error, toy_npz

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def _search(toy, out, trials: int, env: dict | None = None):
    args = ["--space-file", SPACE_FILE, "--space", "tiny_ext", "--flops", "2.3G", "--trials", str(trials), "--epochs", "1",
            "--data", toy, "--out", str(out)]
    return subprocess.Popen([sys.executable, "-m", "nas.search", *args], cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def _descendants(pid: int) -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def _listening(procs) -> dict[tuple[str, int], str]:
    """(address, port) -> process name of every listening TCP socket (and bound UDP socket) of `procs`."""
    found = {}
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN or (c.type == 2 and c.laddr):  # SOCK_DGRAM has no LISTEN state
                    found[(c.laddr.ip, c.laddr.port)] = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback written as an IPv6-mapped address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def _alive(procs) -> list[str]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {p.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


def _watch_until(proc, stop_after_trials: int | None, timeout: float = 300):
    """Read the search's output while sampling its descendants and their sockets; returns (processes seen,
    sockets seen, output lines). With `stop_after_trials`, returns as soon as that many trial lines were printed."""
    import threading

    seen, sockets, lines = {}, {}, []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # list.extend takes lines as they come
    reader.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen.update(_descendants(proc.pid))
        sockets.update(_listening(seen.values()))
        if stop_after_trials is not None and sum(l.startswith("trial ") for l in list(lines)) >= stop_after_trials:
            return seen, sockets, list(lines)
        if proc.poll() is not None:
            reader.join(timeout=10)
            return seen, sockets, list(lines)
        time.sleep(0.2)
    raise AssertionError("the search did not finish in time:\n" + "".join(lines[-20:]))


def _gone_within(procs, seconds: float) -> list[str]:
    deadline = time.time() + seconds
    while time.time() < deadline and _alive(procs):
        time.sleep(0.2)
    return _alive(procs)


@pytest.mark.slow
def test_private_ray_listens_on_loopback_only_and_is_gone_when_the_search_returns(tmp_path, toy):
    # RAY_ADDRESS, and the address file the last `ray start` leaves, name a cluster: without --address a search
    # must join neither (a short temp dir: Ray's socket paths must stay under the Unix limit)
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    os.makedirs(os.path.join(ray_tmp, "ray"))
    with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
        f.write("127.0.0.1:9")
    proc = _search(toy, tmp_path / "run", 4, env={"RAY_ADDRESS": "127.0.0.1:9", "RAY_TMPDIR": ray_tmp})
    seen, sockets, lines = _watch_until(proc, stop_after_trials=None)
    assert proc.returncode == 0, "".join(lines[-20:])
    names = set(sockets.values())
    assert {"raylet", "gcs_server"} <= names, names  # the sockets of Ray's services were sampled
    outside = {addr: name for addr, name in sockets.items() if not _is_loopback(addr[0])}
    assert not outside, f"Ray processes listening outside loopback: {outside}"
    assert not _gone_within(list(seen.values()), 10), "processes the search started outlived it"
    assert any(n.startswith("session_") for n in os.listdir(os.path.join(ray_tmp, "ray")))  # it started its own instance there
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_ray_processes_end_after_the_driver_is_killed(tmp_path, toy):
    proc = _search(toy, tmp_path / "run", 40)
    seen, _, lines = _watch_until(proc, stop_after_trials=2)
    seen.update(_descendants(proc.pid))
    assert "raylet" in _alive(seen.values())[0] or any(a.endswith(" raylet") for a in _alive(seen.values()))
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, not its process group
    proc.wait()
    left = _gone_within(list(seen.values()), 30)
    assert not left, f"still alive 30 s after the driver was killed: {left}"


def _ray_cli(*args, env):
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _refusing_port():
    """A loopback port that refuses connections by construction, for as long as the block runs: a TCP socket is
    bound to it and never listens, so a connection there is answered with a reset, and no other program can bind
    (and so listen on) it meanwhile. (A port bound and closed again is free for anyone to take.)"""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _short_ray_tmp() -> str:
    """A temp dir for RAY_TMPDIR, short enough for Ray's socket paths (the Unix limit is 107 bytes)."""
    return tempfile.mkdtemp(prefix="r", dir="/tmp")


STALE_CLUSTER_COMMANDS = {
    "nas.search": ["--space", "psvit_ext", "--flops", "4.5G", "--trials", "2", "--epochs", "1"],
    "nas.train_supernet": ["--epochs", "1", "--num-workers", "2"],
    "nas.retrain": ["psvit_ext:pvt_spm", "--epochs", "1", "--parallel"],
}


@pytest.mark.parametrize("module", sorted(STALE_CLUSTER_COMMANDS))
def test_address_auto_with_a_stale_cluster_file_is_one_line_within_30_s(tmp_path, module):
    """The file the last `ray start` leaves names a head that is gone: --address auto says which address it tried,
    where it came from and what to do, and exits 2 before writing anything (it used to hang for minutes)."""
    ray_tmp = _short_ray_tmp()
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with _refusing_port() as port:
            with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
                f.write(f"127.0.0.1:{port}")
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
            env["RAY_TMPDIR"] = ray_tmp
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-m", module, *STALE_CLUSTER_COMMANDS[module], "--address", "auto"], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=60)
            seconds = time.time() - t0
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert_user_error(proc, f"--address auto: cannot reach a Ray cluster at 127.0.0.1:{port}", "ray_current_cluster",
                      "ray start --head", "drop --address")
    assert seconds < 30, seconds
    assert not (tmp_path / "results").exists(), list((tmp_path / "results").rglob("*"))


def test_a_refusing_port_refuses_and_nobody_else_can_take_it_while_held():
    import errno
    import socket

    with _refusing_port() as port:
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        for options in ((), (socket.SO_REUSEADDR,), (socket.SO_REUSEADDR, socket.SO_REUSEPORT)):  # not even a server that
            with socket.socket() as other:                                                      # asks to share (gRPC does)
                for option in options:
                    other.setsockopt(socket.SOL_SOCKET, option, 1)
                with pytest.raises(OSError) as taken:
                    other.bind(("127.0.0.1", port))
                assert taken.value.errno == errno.EADDRINUSE


def test_probe_tells_a_ray_head_from_a_closed_port_and_another_program():
    import socket
    import threading

    from nas.cluster import _probe

    with _refusing_port() as port:
        assert "refused" in _probe(f"127.0.0.1:{port}").lower()
    with socket.socket() as server:  # a program that accepts and hangs up at once, as a stale port's new owner may
        server.bind(("127.0.0.1", 0))
        server.listen()
        thread = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        thread.start()
        assert _probe(f"127.0.0.1:{server.getsockname()[1]}") == "it closed the connection without a gRPC answer"
        thread.join(timeout=5)


@pytest.mark.slow
def test_search_across_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    """Two raylets on this machine (one CPU each) joined as docs/cluster.md says, token authentication on.

    Ray Tune hands a pending trial to an idle actor rather than wait for a new one to start, so trials
    must take longer than an actor's start for the second node to get any: psvit_ext at the proxy scale
    on 32x32 images (about 2 s per evaluation), with a given supernet so that none is trained."""
    import pandas as pd

    from nas.training.checkpoint import save_checkpoint
    from search_spaces import get_space
    from supernet import Supernet

    data = toy_npz(tmp_path / "toy32.npz", n_train=1000, n_test=50, side=32)
    space = get_space("psvit_ext")
    scale = space.proxy.with_overrides(img_size=32, num_classes=3)
    save_checkpoint({"space": space.name, "scale": scale.to_dict(), "epoch": 1, "model": Supernet(space, scale).state_dict()},
                    tmp_path / "supernet.pt")

    port = _free_port()
    # its own RAY_TMPDIR: `ray start --head` records the head in <tmp>/ray/ray_current_cluster, which must not outlive the test
    ray_tmp = _short_ray_tmp()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "ab" * 32, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    head = _ray_cli("start", "--head", "--block", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", "--disable-usage-stats", env=env)
    nodes = [head]
    try:
        deadline = time.time() + 60
        while not _can_connect(port) and time.time() < deadline:
            assert head.poll() is None, head.stdout.read()
            time.sleep(0.5)
        nodes.append(_ray_cli("start", "--block", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                              "--disable-usage-stats", env=env))
        _wait_for_nodes(port, 2, env)
        out = tmp_path / "run"
        proc = subprocess.run([sys.executable, "-m", "nas.search", "--space", "psvit_ext", "--flops", "10G", "--trials", "8",
                               "--data", data, "--supernet", str(tmp_path / "supernet.pt"), "--out", str(out),
                               "--address", f"127.0.0.1:{port}"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
        df = pd.read_csv(out / "trials.csv")
        assert len(df) == 8 and df["node"].nunique() == 2, df[["trial", "node"]]
        # the head is found by --address auto through the cluster file it wrote, which answers the probe
        from nas.cluster import _probe

        recorded = open(os.path.join(ray_tmp, "ray", "ray_current_cluster")).read().strip()
        assert recorded.endswith(f":{port}"), recorded
        assert _probe(f"127.0.0.1:{port}") is None, recorded
        assert _probe(recorded) is None, recorded
    finally:
        # every process the two `ray start` started (not `ray stop`, which would end every Ray instance of this user)
        started = [q for p in nodes if p.poll() is None for q in [psutil.Process(p.pid), *_descendants(p.pid).values()]]
        for p in reversed(nodes):
            p.terminate()
        for p in reversed(nodes):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        left = _gone_within(started, 30)
        for q in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                q.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"Ray processes of the two-node cluster outlived the test: {left}"


def _can_connect(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_for_nodes(port: int, count: int, env: dict, timeout: float = 90) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster did not reach {count} nodes: {proc.stdout[-500:]} {proc.stderr[-500:]}")
