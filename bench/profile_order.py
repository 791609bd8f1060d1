"""Where the time goes: one order's and one event's path through the gateway, stage by stage.

``python -m bench.profile_order [--orders N] [--events N] [--pipelined N] [--cprofile]``

The gateway runs in its own process (as in ``python -m bench``) with timestamps
(``time.perf_counter_ns``, CLOCK_MONOTONIC: comparable across processes) taken at the stage
boundaries by wrappers installed before it starts. Each wrapper costs about a microsecond,
which the figures include. Sequential resting orders and single events give per-stage
latencies (medians); a pipelined run gives CPU time per order for each thread (from
/proc's schedstat, in ns, so it does not depend on how busy the machine is) and context
switches. ``--cprofile`` adds a per-thread cProfile of the pipelined run.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from . import workers  # noqa: E402
from .__main__ import POSITIONS, RISK, dealer, instruments_file, order_request, pipelined  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
STAMPS: list[tuple[int, str]] = []
now_ns = time.perf_counter_ns


def _stamp(name: str) -> None:
    STAMPS.append((now_ns(), name))


def _wrap(owner: Any, attr: str, before: str | None, after: str | None = None,
          name_of: Callable[..., str | None] | None = None) -> None:
    original = getattr(owner, attr, None)
    if original is None:  # the code moved: that boundary is simply not stamped
        print(f"profile_order: no {attr} on {owner!r}", file=sys.stderr)
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        label = name_of(*args, **kwargs) if name_of else None
        if before:
            STAMPS.append((now_ns(), label or before))
        result = original(*args, **kwargs)
        if after:
            STAMPS.append((now_ns(), (label + ".end") if label else after))
        return result

    setattr(owner, attr, wrapper)


def _instrument() -> None:
    from adapter import sim

    sim.install()
    from xtquant import xttrader

    from adapter.broker import xt
    from adapter.server.journal import Journal
    from adapter.server.ledger import Ledger
    from adapter.server import gateway, inbox
    from adapter.sim import counter

    poll = zmq.Poller.poll

    def traced_poll(self: zmq.Poller, timeout: Any = None) -> Any:
        ready = poll(self, timeout)
        kinds = sorted("router" if getattr(s, "socket_type", None) == zmq.ROUTER else
                       "inbox" if isinstance(s, int) else "other" for s, _ in ready)
        STAMPS.append((now_ns(), "wake:" + "+".join(kinds)))
        return ready

    zmq.Poller.poll = traced_poll  # type: ignore[method-assign]
    send_multipart = zmq.Socket.send_multipart

    def traced_send(self: zmq.Socket, parts: Any, *args: Any, **kwargs: Any) -> Any:
        kind = "reply" if self.socket_type == zmq.ROUTER else "pub"
        STAMPS.append((now_ns(), f"{kind}_send"))
        result = send_multipart(self, parts, *args, **kwargs)
        STAMPS.append((now_ns(), f"{kind}_sent"))
        return result

    zmq.Socket.send_multipart = traced_send  # type: ignore[method-assign,assignment]
    from adapter.server import desk, outbox

    _wrap(gateway.Gateway, "_read_commands", "read_commands", "read_commands.end")
    _wrap(gateway.Gateway, "_on_command", "on_command")
    _wrap(gateway, "decode_request", None, "decoded")
    _wrap(desk.Desk, "admit", None, "admitted")
    _wrap(desk.Desk, "_check_risk", "risk", "risk.end")
    _wrap(desk.Desk, "on_broker", None, None, name_of=lambda self, m: None)
    _wrap(Ledger, "create", "ledger.create", "ledger.create.end")
    _wrap(Ledger, "commit", "ledger.commit", "ledger.commit.end")
    _wrap(Ledger, "settle", "ledger.settle", "ledger.settle.end")
    _wrap(xt.XtBroker, "submit", "broker.submit")
    _wrap(xt.XtBroker, "_execute", "broker.execute", "broker.execute.end")
    _wrap(xttrader.XtQuantTrader, "order_stock_async", "xt.order_stock_async", "xt.order_stock_async.end")
    for name in ("_serve_or_defer", "serve"):
        if hasattr(counter.SimCounter, name):
            _wrap(counter.SimCounter, name, "sim.serve", "sim.serve.end")
    _wrap(counter.SimCounter, "_settle", "sim.settle", "sim.settle.end")

    def tagged_post(original: Callable[..., None]) -> Callable[..., None]:
        def post(self: Any, item: Any) -> None:
            kind = type(item).__name__
            detail = getattr(item, "event_type", None)
            STAMPS.append((now_ns(), f"post.{kind}" + (f".{detail}" if detail else "")))
            original(self, item)
        return post

    inbox.Inbox.post = tagged_post(_original_post)  # type: ignore[method-assign]
    _wrap(inbox.Inbox, "drain", "inbox.drain", "inbox.drain.end")
    _wrap(desk.Desk, "_on_response", "desk.on_response", "desk.on_response.end")
    _wrap(outbox.Outbox, "number", "outbox.number", "outbox.number.end")
    _wrap(outbox.Outbox, "flush", "outbox.flush", "outbox.flush.end")
    _wrap(Journal, "append", "journal.append", "journal.append.end")
    _wrap(gateway, "encode_ok", "encode_ok", "encode_ok.end")


_original_post: Any = None


def _thread_cpu() -> dict[str, tuple[int, int]]:
    """Per thread name: (ns on a CPU, context switches) from /proc."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, tuple[int, int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/self/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
        except OSError:
            continue
        name = names.get(int(tid), f"native-{tid}")
        if name.startswith("ThreadPoolExecutor"):
            name = "xttrader-executor"
        elif name.startswith("Thread-") and "sim" not in name:
            name = "other:" + name
        old = out.get(name, (0, 0))
        out[name] = (old[0] + ns, old[1] + switches)
    return out


class _ThreadProfiles:
    """One cProfile per thread, started on each new thread's first Python call."""

    def __init__(self) -> None:
        self.profiles: dict[str, cProfile.Profile] = {}

    def install(self) -> None:
        def start(*_: Any) -> None:
            sys.setprofile(None)
            profile = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time: GIL waits excluded
            self.profiles[threading.current_thread().name] = profile
            profile.enable()

        threading.setprofile(start)

    def report(self, top: int = 25) -> str:
        out = io.StringIO()
        for name, profile in self.profiles.items():
            profile.disable()
            stats = pstats.Stats(profile, stream=out)
            if not stats.stats:  # type: ignore[attr-defined]
                continue
            out.write(f"\n===== thread {name} =====\n")
            stats.sort_stats("tottime").print_stats(top)
        return out.getvalue()


def gateway_child(conn: Any, settings: dict[str, Any], cprofile: bool, stamps: bool = True,
                  switch: float = 0.0, experiments: tuple[str, ...] = ()) -> None:
    global _original_post
    from adapter.server import Gateway, inbox

    from . import profile_experiments

    if switch:
        sys.setswitchinterval(switch)
    for name in experiments:
        profile_experiments.EXPERIMENTS[name]()
    _original_post = inbox.Inbox.post
    profiles = _ThreadProfiles() if cprofile else None
    if profiles is None and stamps:
        _instrument()
    with tempfile.TemporaryDirectory() as directory:
        gw = Gateway(workers.gateway_config(directory, settings))
        if profiles is not None:
            profiles.install()
        gw.start()
        conn.send((gw.router_endpoint, gw.pub_endpoint))
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            if command[0] == "reset":
                STAMPS.clear()
                conn.send(_thread_cpu())
            elif command[0] == "stamps":
                conn.send((list(STAMPS), _thread_cpu()))
            elif command[0] == "push":
                gw.broker.counter.push_assets(workers.ACCOUNT, command[1])
                conn.send("pushed")
            elif command[0] == "profile":
                conn.send(profiles.report() if profiles else "")
        gw.stop()


def _windows(stamps: list[tuple[int, str]], spans: list[tuple[int, int]]) -> list[dict[str, int]]:
    """For each (start, end) span, the first time of each stamp name inside it (occurrences numbered)."""
    stamps.sort()
    out = []
    index = 0
    for start, end in spans:
        while index < len(stamps) and stamps[index][0] < start:
            index += 1
        seen: dict[str, int] = {}
        counts: collections.Counter[str] = collections.Counter()
        j = index
        while j < len(stamps) and stamps[j][0] <= end:
            t, name = stamps[j]
            counts[name] += 1
            label = name if counts[name] == 1 else f"{name}#{counts[name]}"
            seen.setdefault(label, t - start)
            j += 1
        seen["client.recv"] = end - start
        out.append(seen)
    return out


def _table(windows: list[dict[str, int]], title: str) -> str:
    names: collections.Counter[str] = collections.Counter()
    for w in windows:
        names.update(w)
    common = [n for n, c in names.items() if c >= 0.9 * len(windows)]
    medians = sorted((statistics.median(w[n] for w in windows if n in w) / 1000, n) for n in common)
    lines = [f"### {title} (n={len(windows)}; medians, µs from the client's send)", "",
             "| stage boundary | at µs | Δ µs |", "|---|---:|---:|"]
    previous = 0.0
    for at, name in medians:
        lines.append(f"| {name} | {at:.1f} | {at - previous:.1f} |")
        previous = at
    return "\n".join(lines)


def _latency(spans: list[tuple[int, int]], title: str) -> str:
    ordered = sorted(end - start for start, end in spans)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return f"{title}: p50 {pick(0.5):.0f} µs, p90 {pick(0.9):.0f} µs, p99 {pick(0.99):.0f} µs (n={len(ordered)})"


def _cpu_table(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], count: int, what: str) -> str:
    lines = [f"| thread | CPU µs per {what} | context switches per {what} |", "|---|---:|---:|"]
    total = 0.0
    for name in sorted(after):
        ns = after[name][0] - before.get(name, (0, 0))[0]
        sw = after[name][1] - before.get(name, (0, 0))[1]
        if ns / count < 0.5:
            continue
        total += ns / count / 1000
        lines.append(f"| {name} | {ns / count / 1000:.1f} | {sw / count:.2f} |")
    lines.append(f"| **all** | **{total:.1f}** | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_order")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--pipelined", type=int, default=5000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--plain", action="store_true", help="no stage stamps: client latencies and CPU only")
    parser.add_argument("--switch", type=float, default=0.0, help="sys.setswitchinterval in the gateway (s)")
    parser.add_argument("--experiment", action="append", default=[], help="a patch from bench/profile_experiments.py")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="qmt-profile-"))
    sim = {"cash": 1e12, "instruments_file": instruments_file(scratch), "persist": False,
           "positions": {workers.ACCOUNT: {f"6{i:05d}.SH": 1000 for i in range(POSITIONS)}}}
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=gateway_child, args=(child, {"sim": sim, "risk": RISK}, args.cprofile, not args.plain,
                                                           args.switch, tuple(args.experiment)), daemon=True)
    proc.start()
    if not conn.poll(60):
        raise RuntimeError("the gateway did not start")
    router, pub = conn.recv()
    sock = dealer(router)
    out = []
    try:
        if not args.cprofile:
            for i in range(200):  # warm-up
                sock.send(order_request(i))
                sock.recv()
            conn.send(("reset",))
            conn.recv()
            spans = []
            for i in range(args.orders):
                frame = order_request(10_000 + i)
                start = now_ns()
                sock.send(frame)
                sock.recv()
                spans.append((start, now_ns()))
                time.sleep(0.0005)  # let the trailing events of this order leave first
            conn.send(("stamps",))
            stamps, _ = conn.recv()
            out.append(_latency(spans, "resting order_stock round trip, client side"))
            if stamps:
                out.append(_table(_windows(stamps, spans), "resting order_stock round trip"))
            # Events: one asset push at a time, received by a raw SUB here.
            sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
            sub.subscribe(b"asset.")
            sub.connect(pub)
            time.sleep(0.5)
            conn.send(("push", 1))
            conn.recv()
            while sub.poll(200):
                sub.recv_multipart()
            conn.send(("reset",))
            conn.recv()
            spans = []
            for _ in range(args.events):
                start = now_ns()
                conn.send(("push", 1))
                sub.recv_multipart()
                spans.append((start, now_ns()))
                conn.recv()
            conn.send(("stamps",))
            stamps, _ = conn.recv()
            out.append(_latency(spans, "one asset event, push request to SUB receipt"))
            if stamps:
                out.append(_table(_windows(stamps, spans), "one asset event, push request to SUB receipt "
                              "(the request crosses a pipe to the gateway process first)"))
            # Event throughput CPU: a burst as in the bench.
            conn.send(("reset",))
            before = conn.recv()
            burst = time.perf_counter_ns()
            conn.send(("push", args.events * 10))
            conn.recv()
            got = 0
            while got < args.events * 10 and sub.poll(5000):
                sub.recv_multipart()
                got += 1
            conn.send(("stamps",))
            _, after = conn.recv()
            rate = args.events * 10 / ((time.perf_counter_ns() - burst) / 1e9)
            out.append(f"### CPU per event, burst of {args.events * 10} asset pushes ({rate:.0f} events/s)\n\n"
                       + _cpu_table(before, after, args.events * 10, "event"))
            sub.close(0)
        conn.send(("reset",))
        before = conn.recv()
        rate = pipelined(sock, args.pipelined, args.window, first=1_000_000)
        conn.send(("stamps",))
        _, after = conn.recv()
        out.append(f"### CPU per pipelined order (window {args.window}, {args.pipelined} orders, "
                   f"{rate:.0f} orders/s{' with cProfile on' if args.cprofile else '' if args.plain else ', stamping on'})\n\n"
                   + _cpu_table(before, after, args.pipelined, "order"))
        if args.cprofile:
            conn.send(("profile",))
            out.append(conn.recv())
    finally:
        conn.send(("stop",))
        proc.join(30)
        sock.close(0)
    print("\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
