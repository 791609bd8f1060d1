"""ZeroMQ socket monitors that cannot stall their context.

libzmq sends a socket's monitor events from the context's I/O thread, with a blocking send on
an inproc PAIR. Once the reading end is closed while the socket lives on (for the moment its
close takes, too), the next event, say a peer that disconnects, blocks that I/O thread for
good: no socket of the context makes a connection again, a shared ``zmq.Context.instance()``
included, and terminating the context hangs. So events are stopped at the source before the
reading end goes.
"""

from __future__ import annotations

from typing import Any

import zmq


def close_monitor(socket: zmq.Socket[Any], monitor: zmq.Socket[Any]) -> None:
    """Stop ``socket``'s events, then close ``monitor``, the reading end (owner thread only)."""
    if not socket.closed:
        socket.disable_monitor()
    monitor.close(linger=0)
