"""Looking at a running ``python -m serving.api`` from outside: ports, workers, sockets.

Shared by the benchmarks that start a real server (``bench.serve``, ``bench.realtime``,
``bench.soak``) and the tests that do (``tests/test_api_process.py``,
``tests/test_realtime_process.py``). Linux only: workers and socket owners are read from
``/proc``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_pids(pid: int) -> list[int]:
    """uvicorn worker processes of the server ``pid`` (not multiprocessing's helpers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    out = []
    for kid in kids:
        try:
            if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                out.append(kid)
        except OSError:
            pass
    return out


def socket_owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The process among ``pids`` whose socket serves the loopback connection from
    ``client_port`` to ``server_port`` (the connection must still be open); None when
    the connection or its owner is not found."""
    want_local, want_remote = f"{server_port:04X}", f"{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].split(":")[1] == want_local and fields[2].split(":")[1] == want_remote:
            inode = f"socket:[{fields[9]}]"
            break
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == inode:
                    return pid
        except OSError:
            continue
    return None


def request(
    port: int,
    key: str,
    method: str,
    path: str,
    body: object = None,
    pids: list[int] | None = None,
) -> tuple[int, object, int | None]:
    """One keyed JSON request on a fresh loopback connection.

    Returns ``(status, parsed JSON body, worker pid or None)``; the worker is looked up
    among ``pids`` while the connection is open (None when ``pids`` is None).
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.connect()
        client_port = conn.sock.getsockname()[1]
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        pid = None if pids is None else socket_owner(port, client_port, pids)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null"), pid
    finally:
        conn.close()


__all__ = ["HOST", "free_port", "request", "socket_owner", "worker_pids"]
