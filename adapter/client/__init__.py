"""Strategy-side client of the qmt-zmq-adapter gateway, blocking and asyncio.

Methods are named and parameterised like ``XtQuantTrader``'s, with ``account_id`` (and
keyword-only ``account_type``) in place of the account object::

    from adapter.client import Client

    with Client("tcp://gateway:5555", "tcp://gateway:5556") as client:
        asset = client.query_stock_asset("1000000365")
        print(asset.cash)
        reply = client.order_stock("1000000365", "600000.SH", 23, 100, 11, 10.5)
        for event in client.events("order.1000000365.", timeout=5):
            print(event.seq, event.data.order_status)

Every failure raises :class:`GatewayError` (``.code`` is a stable string); a call without a
reply in time raises :class:`GatewayTimeout`. :class:`Client` serialises calls from several
threads; :class:`AsyncClient` runs any number of calls at once.

Event streams (``events()``, ``subscribe()``) recover: every event once, in ``seq`` order,
gaps filled from the gateway's journal (``replay``), with ``from_seq=`` for history and
``state_file=`` to resume after a restart. ``gateway.epoch`` and ``gateway.gap`` notices
(``EPOCH_EVENT``, ``GAP_EVENT``; seq None) say when to re-snapshot. See
:mod:`adapter.client.recovery`. A ``gateway.liveness`` notice (``LIVENESS_EVENT``) says when the
gateway fell silent (missed heartbeats) and when it is heard again; ``gateway_alive`` on a
stream or client says the same.

Market data (PROTOCOL §16): ``get_full_tick``, ``get_market_data_ex``, ... with xtdata's names,
answering xtdata's plain values (``to_frames`` makes xtdata's DataFrames of bars);
:class:`Quotes` subscribes to quotes with xtdata's callbacks and keeps the leases.
"""

from .aio import AsyncClient, AsyncEventStream, AsyncSubscription
from ._market import DOWNLOAD_TIMEOUT, to_frames
from .errors import CLIENT_CLOSED, CLIENT_TIMEOUT, INVALID_REPLY, GatewayError, GatewayTimeout
from ._stream import LIVENESS_EVENT
from .records import Event, Record, replayed_events
from .recovery import EPOCH_EVENT, GAP_EVENT, StreamStats
from .sync import Client, EventStream, Subscription
from .quotes import Quotes

__all__ = [
    "CLIENT_CLOSED",
    "CLIENT_TIMEOUT",
    "DOWNLOAD_TIMEOUT",
    "EPOCH_EVENT",
    "GAP_EVENT",
    "INVALID_REPLY",
    "LIVENESS_EVENT",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncSubscription",
    "Client",
    "Event",
    "EventStream",
    "GatewayError",
    "GatewayTimeout",
    "Quotes",
    "Record",
    "StreamStats",
    "Subscription",
    "replayed_events",
    "to_frames",
]
