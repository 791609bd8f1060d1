"""The verdict buy/sell/cancel reach from an order's events (adapter.cli.trading.Watch), case by case."""

from __future__ import annotations

from adapter.cli.common import EXIT_NO_VERDICT, EXIT_REFUSED
from adapter.cli.trading import Watch
from adapter.client.records import Event, Record

ORDER_ID = 1082130433


def ev(etype: str, **data: object) -> Event:
    fields: dict[str, object] = {"order_id": ORDER_ID}
    fields.update(data)
    return Event(f"{etype}.1000000365.", 1, 0, etype, "1000000365", Record(fields))


def order(status: int, traded: int = 0, **more: object) -> Event:
    return ev("order", order_status=status, order_volume=200, traded_volume=traded,
              traded_price=10.6 if traded else 0.0, **more)


def trade(traded_id: str, volume: int) -> Event:
    return ev("trade", traded_id=traded_id, traded_volume=volume, traded_price=10.6, traded_amount=volume * 10.6,
              commission=5.0)


def test_a_fill_prints_each_trade_once_and_ends_filled() -> None:
    watch = Watch(ORDER_ID)
    assert watch.on_event(order(48)) == [] and not watch.done
    assert watch.on_event(order(50)) == [] and not watch.done
    assert watch.on_event(trade("T1", 200)) == ["filled 200 @ 10.60 = 2120.00, commission 5.00 (trade T1)"]
    assert watch.on_event(trade("T1", 200)) == []  # the same fill again (a replay): printed once
    watch.on_event(order(56, 200))
    assert watch.done and watch.verdict(2) == (0, f"order {ORDER_ID}: 56 已成 filled, 200 @ 10.60")


def test_other_orders_events_are_not_this_ones() -> None:
    watch = Watch(ORDER_ID)
    other = Event("order.1.", 1, 0, "order", "1", Record({"order_id": 7, "order_status": 57}))
    assert watch.on_event(other) == [] and watch.order is None and not watch.done


def test_a_junked_order_is_refused_with_the_counters_message() -> None:
    watch = Watch(ORDER_ID)
    watch.on_event(order(57, status_msg="[COUNTER] [120147][资金可用金额不足]"))
    assert watch.done
    assert watch.verdict(2) == (EXIT_REFUSED, f"order {ORDER_ID} refused by the counter: 57 废单 rejected: "
                                              "[COUNTER] [120147][资金可用金额不足]")
    errored = Watch(ORDER_ID)  # an order_error alone is a refusal too
    errored.on_event(ev("order_error", error_id=-61, error_msg="限价买入 资金不足"))
    assert errored.done and errored.verdict(2)[0] == EXIT_REFUSED and "资金不足 (error -61)" in errored.verdict(2)[1]


def test_a_reported_or_part_filled_order_rests_and_an_unreported_one_has_no_verdict() -> None:
    resting = Watch(ORDER_ID)
    resting.on_event(order(50))
    assert resting.verdict(2) == (0, f"order {ORDER_ID} rests at the counter: 50 已报 reported, 0 of 200 filled")
    part = Watch(ORDER_ID)
    part.on_event(order(55, 100))
    assert part.verdict(2) == (0, f"order {ORDER_ID} rests at the counter: 55 部成 part filled, 100 of 200 filled "
                                  "@ 10.60")
    silent = Watch(ORDER_ID)
    assert silent.verdict(2)[0] == EXIT_NO_VERDICT and "within 2 s" in silent.verdict(2)[1]
    pending = Watch(ORDER_ID)
    pending.on_event(order(49))
    assert pending.verdict(2)[0] == EXIT_NO_VERDICT and "(last: 49 待报 pending)" in pending.verdict(2)[1]


def test_a_query_fills_in_only_what_the_events_did_not_say() -> None:
    watch = Watch(ORDER_ID)
    watch.on_event(order(50))
    watch.on_query(Record({"order_id": ORDER_ID, "order_status": 48}))  # older than the events: kept out
    assert watch.status == 50
    watch.on_query(Record({"order_id": ORDER_ID, "order_status": 56, "order_volume": 200, "traded_volume": 200,
                           "traded_price": 10.6}))
    assert watch.done and watch.verdict(2)[0] == 0


def test_cancel_verdicts() -> None:
    done = Watch(ORDER_ID, cancel=True)
    done.on_event(order(51))
    assert not done.done
    done.on_event(order(54))
    assert done.done and done.verdict(2) == (0, f"order {ORDER_ID} cancelled: 54 已撤 cancelled")
    part = Watch(ORDER_ID, cancel=True)
    part.on_event(order(53, 100))
    assert part.verdict(2) == (0, f"order {ORDER_ID} cancelled: 53 部撤 part cancelled, 100 of 200 filled before")
    refused = Watch(ORDER_ID, cancel=True)
    refused.on_event(ev("order_error", error_id=1, error_msg="not this one"))  # an order's error, not the cancel's
    assert not refused.done
    refused.on_event(ev("cancel_error", error_id=110003, error_msg="该委托已成交或已撤单，不能撤单"))
    assert refused.done and refused.verdict(2) == (
        EXIT_REFUSED, f"cancel of order {ORDER_ID} refused by the counter: 该委托已成交或已撤单，不能撤单 (error 110003)")
    late = Watch(ORDER_ID, cancel=True)
    late.on_event(order(56, 200))
    assert late.done and late.verdict(2) == (EXIT_REFUSED, f"cancel of order {ORDER_ID} came too late: the order is "
                                                           "56 已成 filled")
    pending = Watch(ORDER_ID, cancel=True)
    pending.on_event(order(51))
    assert pending.verdict(3)[0] == EXIT_NO_VERDICT and "(last: 51 已报待撤 cancel pending)" in pending.verdict(3)[1]
