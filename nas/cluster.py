"""The Ray instance a command uses: a private one on this machine, or the cluster named by --address."""
from __future__ import annotations

from nas.errors import UserError


def check_address(address: str) -> None:
    """Fail fast on an explicit host:port nobody listens on (ray.init would retry for minutes)."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Join the cluster at `address` or start a private Ray instance on localhost, dashboard off."""
    import ray

    if ray.is_initialized():
        return ray
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({str(e).splitlines()[0][:120]})") from None
    return ray
