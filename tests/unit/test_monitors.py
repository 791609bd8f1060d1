"""A closed socket monitor leaves its context able to connect (adapter.monitors)."""

from __future__ import annotations

import time

import zmq

from adapter.monitors import close_monitor

from .test_client import unused_endpoint


def _reconnected(sub: zmq.Socket, pub: zmq.Socket, seconds: float = 5.0) -> bool:
    """Publish until ``sub`` hears it: it has connected (again) and shaken hands."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pub.send(b"x")
        if sub.poll(50):
            sub.recv()
            return True
    return False


def _bind(socket: zmq.Socket, endpoint: str, seconds: float = 5.0) -> None:
    """Bind where a closed socket listened: libzmq lets the port go a moment after close()."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.bind(endpoint)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_events_after_the_monitor_is_closed_do_not_stall_the_context() -> None:
    """libzmq sends monitor events from the context's I/O thread with a blocking send: with the
    reading end simply closed, the next disconnect stops every connection of the context."""
    context, peers = zmq.Context(), zmq.Context()
    healthy = False
    try:
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.subscribe(b"")
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        pub = peers.socket(zmq.PUB)
        pub.linger = 0
        endpoint = unused_endpoint()
        _bind(pub, endpoint)
        sub.connect(endpoint)
        assert _reconnected(sub, pub)
        close_monitor(sub, monitor)
        for cycle in range(3):  # the peer goes and comes back: a disconnect and a handshake each time
            pub.close()
            pub = peers.socket(zmq.PUB)
            pub.linger = 0
            _bind(pub, endpoint)
            assert _reconnected(sub, pub), f"the SUB did not reconnect after cycle {cycle}"
        router = peers.socket(zmq.ROUTER)
        router.linger = 0
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.connect(f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}")
        healthy = bool(dealer.poll(5000, zmq.POLLOUT))
        assert healthy, "a new socket of the same context never connected"
    finally:
        peers.destroy(linger=0)
        if healthy:  # a stalled context cannot be terminated: it is left to the process's end
            context.destroy(linger=0)


def test_closing_the_monitor_of_a_closed_socket_only_closes_the_monitor() -> None:
    context = zmq.Context()
    try:
        sub = context.socket(zmq.SUB)
        monitor = sub.get_monitor_socket()
        sub.close(linger=0)
        close_monitor(sub, monitor)
        assert monitor.closed
    finally:
        context.term()
