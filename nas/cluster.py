"""The Ray instance a command uses: a private one on this machine, or the cluster named by --address.

A private instance (no --address; RAY_ADDRESS in the environment is ignored) is single-node and
loopback-only: every Ray process of it listens on 127.0.0.1 (or ::1), and all of them stop when the
command ends, whether normally, on an error or on Ctrl-C (atexit: `stop_ray`), or when the command is
killed (Ray's own fate-sharing of the processes `ray.init` starts, plus a watchdog for the ones the
raylet starts). docs/security.md ("Ray") says what binds where and why.
"""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys

from nas.errors import UserError

# Ray reads this at import (ray/_private/ray_constants.py: ENABLE_RAY_CLUSTER); false makes
# services.get_node_ip_address() answer the loopback address, and it forbids joining more nodes.
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Runs beside the command in its own session (a kill of the command's process group spares it). While
# the command lives it notes the Ray processes among the command's descendants; when its stdin reaches
# EOF (the command closed it after ray.shutdown, or died, even by SIGKILL) it ends those still alive.
_WATCHDOG = r"""
import os, select, signal, sys, time

driver, ray_dir = int(sys.argv[1]), sys.argv[2]

def table():
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        procs[int(name)] = (fields[0], int(fields[1]), fields[19], cmdline)  # state, ppid, start time, cmdline
    return procs

def is_ray(cmdline):
    return cmdline.startswith("ray::") or ray_dir in cmdline

seen = {}
def note():
    procs = table()
    children = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(children.get(driver, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid != os.getpid() and is_ray(procs[pid][3]):
            seen[pid] = procs[pid][2]

def alive():
    procs = table()
    return [pid for pid, start in seen.items() if pid in procs and procs[pid][2] == start and procs[pid][0] not in (b"Z", b"X")]

stdin = sys.stdin.fileno()
while True:
    note()
    if select.select([stdin], [], [], 0.5)[0] and not os.read(stdin, 4096):
        break
for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
    left = alive()
    for pid in left:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.time() + grace
    while left and time.time() < deadline:
        time.sleep(0.05)
        left = alive()
    if not left:
        break
"""

_private: dict = {}  # "started": this command started the instance; "watchdog": its watchdog process


PROBE_TIMEOUT_S = 5.0  # per step (connect, answer): a live head answers in milliseconds
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + an empty SETTINGS frame


def resolve_address(address: str) -> tuple[str, str]:
    """(HOST:PORT, where it came from) of the head `--address` names. For `auto`, Ray's own order: RAY_ADDRESS,
    then the file the last `ray start` on this machine wrote (/tmp/ray/ray_current_cluster), then a raylet
    running here."""
    if address != "auto":
        hostport = address.split("://", 1)[-1]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
        return address, "the --address flag"
    from ray._private.services import get_ray_address_from_environment
    from ray._private.utils import get_ray_address_file, read_ray_address

    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UserError(f"--address auto: no Ray cluster is known on this machine (no RAY_ADDRESS, no {get_ray_address_file(None)}, "
                        "no raylet running); start one with `ray start --head`, or drop --address to run on a private local "
                        "instance") from None
    if os.environ.get("RAY_ADDRESS"):
        source = "RAY_ADDRESS in the environment"
    elif found == read_ray_address():
        source = f"{get_ray_address_file(None)}, left by the last `ray start` on this machine"
    else:
        source = "a raylet running on this machine"
    return found, source


def _probe(hostport: str) -> str | None:
    """Why the head at [SCHEME://]HOST:PORT does not answer as a Ray head (its GCS, a gRPC server), or None if it does.

    A TCP connection alone is not enough (a stale address may now belong to another program, and ray.init
    then waits for minutes): the HTTP/2 connection preface must be answered by a SETTINGS frame, as every
    gRPC server does at once, before any authentication."""
    import socket

    host, _, port = hostport.split("://", 1)[-1].rpartition(":")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S)
    except socket.timeout:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    with sock:
        try:
            sock.settimeout(PROBE_TIMEOUT_S)
            sock.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
        except socket.timeout:
            return f"it accepted a connection but sent no gRPC answer within {PROBE_TIMEOUT_S:g} s"
        except OSError:  # reset: it hung up on the preface
            header = b""
    if len(header) < 9:
        return "it closed the connection without a gRPC answer"
    return None if header[3] == 0x4 else "what answers there is not a gRPC server"


def check_address(address: str) -> str:
    """The address of the Ray head `--address` names (`auto` resolved), checked to answer within a few seconds; otherwise one
    line saying which address was tried, where it came from and what to do (ray.init would wait for minutes)."""
    found, source = resolve_address(address)
    reason = _probe(found)
    if reason is not None:
        raise UserError(f"--address {address}: cannot reach a Ray cluster at {found} (from {source}): {reason}; "
                        "start one there with `ray start --head`, or drop --address to run on a private local instance")
    return found


def _start_watchdog(ray_dir: str):
    """The watchdog process (Linux: it reads /proc), or None where there is no /proc."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        return None
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), ray_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _own_token() -> None:
    """Token authentication with a token of this instance's own, in the environment of its processes only.

    Ray's default for a new instance is token authentication with a token it writes to ~/.ray/auth_token,
    a file outside results/ that outlives the command. Ray reads the mode into its C++ config at import,
    so the config is initialised again, as Ray's own `_enable_token_auth` does.
    """
    from ray._private.authentication import authentication_token_setup as setup
    from ray._raylet import AuthenticationTokenLoader

    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    setup._enable_token_auth()  # RAY_AUTH_MODE=token, then Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _start_private(ray, num_cpus: int | None, num_gpus: int | None) -> None:
    """ray.init of a single-node instance whose node address, and so every listening socket, is loopback.

    ray.init(_node_ip_address="127.0.0.1") alone is not enough: ray.init turns a loopback address into the
    machine's outward one (worker.py: services.resolve_ip_for_localhost), unless Ray is in single-node mode
    (services.get_node_ip_address: `if not ray_constants.ENABLE_RAY_CLUSTER: return get_localhost_ip()`).
    The raylet, the GCS, the workers and both agents bind the node address (or loopback when it is
    loopback) -- see docs/security.md.
    """
    from ray._private import ray_constants

    saved_env = {k: os.environ.get(k) for k in ("RAY_ADDRESS", _SINGLE_NODE_ENV)}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.pop("RAY_ADDRESS", None)  # only --address joins a cluster
    os.environ[_SINGLE_NODE_ENV] = "0"  # for the processes ray.init starts (they read it at import)
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this process, which imported Ray already
    if "RAY_AUTH_MODE" not in os.environ:
        _own_token()
    _private.update(started=True, watchdog=_start_watchdog(os.path.dirname(os.path.abspath(ray.__file__))))
    atexit.register(stop_ray)
    try:
        # address="local": a new instance. With None, ray.init joins RAY_ADDRESS or, failing that, the cluster
        # recorded in /tmp/ray/ray_current_cluster by the last `ray start` on this machine.
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    except BaseException:
        stop_ray()
        raise
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stop_ray() -> None:
    """End this command's Ray: a private instance stops (all its processes, waited for); a joined cluster
    is only disconnected from. Safe to call more than once; registered with atexit by start_ray."""
    import ray

    try:
        if ray.is_initialized():
            ray.shutdown(wait_for_processes=bool(_private.get("started")))
    finally:
        _private.pop("started", None)
        watchdog = _private.pop("watchdog", None)
        if watchdog is not None:
            try:
                watchdog.stdin.close()  # EOF: it ends what is left of the instance, then exits
                watchdog.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Join the cluster at `address` or start a private, loopback-only Ray instance on this machine,
    dashboard off; either way it is stopped (private) or left (joined) when the command ends."""
    import ray

    if ray.is_initialized():
        return ray
    if address:
        found = check_address(address)
        try:
            ray.init(address=found, include_dashboard=False, log_to_driver=False)
        except ray.exceptions.AuthenticationError as e:
            raise UserError(f"--address {address}: the cluster wants its token ({str(e).splitlines()[0][:160]}); set "
                            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token) as in docs/cluster.md") from None
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"--address {address}: cannot reach a Ray cluster there ({str(e).splitlines()[0][:120]})") from None
        atexit.register(stop_ray)
        return ray
    _start_private(ray, num_cpus, num_gpus)
    return ray
