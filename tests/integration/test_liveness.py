"""A client sees the gateway go silent and come back: a `gateway.liveness` notice each way and the
`gateway_alive` property, for the blocking and the asyncio client, against real gateways."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapter.client import AsyncClient, Client, LIVENESS_EVENT
from adapter.server import Gateway

from ..conftest import EventLog, free_port, make_config, wait_for


def fixed_config(tmp_path: Path) -> Any:
    """A gateway on fixed loopback ports with fast heartbeats, so a restart comes back where it was."""
    config = make_config(data_dir=str(tmp_path / "gw"), heartbeat_interval=0.1)
    return replace(config, router=f"tcp://127.0.0.1:{free_port()}", pub=f"tcp://127.0.0.1:{free_port()}")


def started(config: Any) -> Gateway:
    gateway = Gateway(config)
    gateway.start()
    return gateway


def test_a_subscription_reports_the_gateway_gone_and_back(tmp_path: Path) -> None:
    config = fixed_config(tmp_path)
    gateway = started(config)
    again = None
    try:
        with Client(config.router, config.pub, timeout=5.0) as client:
            log = EventLog()
            subscription = client.subscribe(log)
            assert subscription.wait_subscribed()
            # Heartbeats (not handed out: they are the stream's own) arm the watch: three
            # intervals, at least 3 s.
            wait_for(lambda: subscription.gateway_alive, 5.0, what="the first heartbeat")
            assert client.gateway_alive is True
            gateway.stop()
            gone = log.wait(LIVENESS_EVENT, timeout=15.0)[0]
            assert gone.data.alive is False and gone.data.silent_for >= 3.0 and gone.seq is None
            assert subscription.gateway_alive is False and client.gateway_alive is False
            again = started(config)
            back = log.wait(LIVENESS_EVENT, timeout=15.0, count=2)[1]
            assert back.data.alive is True and client.gateway_alive is True
            subscription.close()
    finally:
        for gw in (gateway, again):
            if gw is not None:
                gw.stop()


def test_an_async_stream_reports_the_gateway_gone(tmp_path: Path) -> None:
    config = fixed_config(tmp_path)
    gateway = started(config)

    async def run() -> list[Any]:
        async with AsyncClient(config.router, config.pub, timeout=5.0, liveness_timeout=1.0) as client:
            stream = client.events()
            assert await stream.wait_subscribed()
            assert stream.gateway_alive is True  # an explicit limit watches from the first message
            await asyncio.get_running_loop().run_in_executor(None, gateway.stop)
            notices = []
            for _ in range(100):  # pongs and heartbeats already read come first
                event = await stream.receive(15.0)
                assert event is not None, "no liveness notice in time"
                if event.type == LIVENESS_EVENT:
                    notices.append(event)
                    break
            assert stream.gateway_alive is False and client.gateway_alive is None  # no subscriptions
            stream.close()
            return notices

    try:
        notices = asyncio.run(asyncio.wait_for(run(), 30))
        assert notices[0].data.alive is False
    finally:
        gateway.stop()
