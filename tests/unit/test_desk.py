"""The order desk without I/O: every order outcome, driven by hand with a fake clock.

The ledger, kill switch and view are the real ones (files in tmp_path); the broker is the
test itself, answering the desk's ``Submit`` actions with broker messages.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adapter.broker.messages import Answered, Books, Connection, Failed, Pushed, Responded, Sent
from adapter.config import Config
from adapter.keys import ClientKey
from adapter.server.ledger import ACKNOWLEDGED, NOT_PLACED, REJECTED, SENDING, UNKNOWN, Ledger, OrderRecord
from adapter.protocol import ProtocolError, errors, events, mapping, ops
from adapter.server.reference import reference_for
from adapter.server.risk import HALTED, RiskEngine
from adapter.server import access
from adapter.server.desk import GATEWAY_CLIENT, Control, Desk, Publish, Reconnect, Refuse, Reply, Submit
from adapter.server.killswitch import KillSwitch
from adapter.server.view import BooksView

ACCOUNT = "1000000365"
OPEN_RISK = {"orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 0}
REPORTED = 50  # xtconstant.ORDER_REPORTED


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A desk over real stores in a directory, with the test as its broker."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        risk = {**OPEN_RISK, **settings.pop("risk", {})}
        self.config = Config(accounts=(ACCOUNT,), data_dir=str(tmp), broker_timeout=10.0,
                             unknown_sweep_interval=5.0, risk=risk, **settings)
        self.clock = Clock()
        self.ledger = Ledger(tmp)
        self.killswitch = KillSwitch(tmp / "state")
        (tmp / "state").mkdir(exist_ok=True)
        self.desk = Desk(self.config, self.ledger, RiskEngine(self.config.risk_config(), reference_for(self.config)),
                         self.killswitch, BooksView(self.config.accounts), clock=self.clock,
                         wall=lambda: 1_700_000_000_000_000_000)
        self.requests = 0
        self.connect()

    def connect(self) -> list[Any]:
        self.desk.on_broker(Books(ACCOUNT, {"asset": None, "positions": [], "orders": [], "trades": []}))
        self.desk.on_broker(Connection(True, "connected", 1))
        return self.desk.drain()

    def command(self, op: str, client: bytes = b"client", **args: Any) -> list[Any]:
        self.requests += 1
        spec, checked = self.desk.admit(op, {"account_id": ACCOUNT, **args}, access.LOCAL)
        self.desk.on_command([client], self.requests, spec, checked, access.LOCAL)
        return self.desk.drain()

    def buy(self, op: str = "order_stock", **args: Any) -> list[Any]:
        order = {"stock_code": "600000.SH", "order_type": "buy", "order_volume": 100, "price_type": "limit",
                 "price": 10.0, "client_order_id": "c1", **args}
        return self.command(op, **order)

    def broker(self, message: Any) -> list[Any]:
        self.desk.on_broker(message)
        return self.desk.drain()

    def tick(self, seconds: float) -> list[Any]:
        self.clock.now += seconds
        self.desk.on_tick(self.clock.now)
        return self.desk.drain()

    def record(self, client_order_id: str = "c1") -> OrderRecord:
        record = self.ledger.get(ACCOUNT, client_order_id)
        assert record is not None
        return record


def only(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def order_response(submit: Submit, order_id: int, seq: int = 7, error_msg: str = "") -> Responded:
    data = {"account_type": 2, "account_id": ACCOUNT, "order_id": order_id, "strategy_name": "",
            "order_remark": submit.args["order_remark"], "error_msg": error_msg, "seq": seq}
    return Responded(submit.token, submit.spec.kind, "order_response", ACCOUNT, data, 2)


def order_push(tag: str, order_id: int, status: int) -> Pushed:
    data = {name: None for name in events.ORDER_FIELDS}
    data.update(account_type=2, account_id=ACCOUNT, stock_code="600000.SH", order_id=order_id, order_status=status,
                order_remark=tag, order_type=23, order_volume=100, price=10.0, traded_volume=0, status_msg="")
    return Pushed("order", ACCOUNT, data, 3)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_an_order_goes_to_the_counter_once_recorded_and_its_response_is_the_reply(h: Harness) -> None:
    [submit] = h.buy()
    assert isinstance(submit, Submit) and submit.spec.name == "order_stock"
    assert submit.args["order_remark"] == h.record().tag  # the counter sees the tag, not the user's remark
    assert h.record().state == SENDING
    assert h.broker(Sent(submit.token, submit.spec.kind, 7)) == []  # a sync order waits for the response
    [reply] = h.broker(order_response(submit, 1082130433))
    assert isinstance(reply, Reply) and reply.result["order_id"] == 1082130433
    assert reply.result["client_order_id"] == "c1"
    assert h.record().state == ACKNOWLEDGED and h.record().order_id == 1082130433


def test_a_counter_refusal_is_rejected_and_the_reply_carries_order_id_minus_one(h: Harness) -> None:
    [submit] = h.buy()
    [reply] = h.broker(order_response(submit, -1, error_msg="资金可用金额不足"))
    assert isinstance(reply, Reply) and reply.result["order_id"] == -1
    assert h.record().state == REJECTED and "资金" in h.record().error_msg


def test_a_refusal_pushed_before_the_response_makes_the_order_rejected(h: Harness) -> None:
    [submit] = h.buy()
    tag = submit.args["order_remark"]
    published = h.broker(order_push(tag, 1082130433, mapping.ORDER_JUNK))
    assert [p.data["client_order_id"] for p in only(published, Publish)] == ["c1"]  # linked on the way out
    h.broker(order_response(submit, 1082130433))
    assert h.record().state == REJECTED


def test_an_acknowledged_order_refused_after_numbering_becomes_rejected(h: Harness) -> None:
    [submit] = h.buy()
    h.broker(order_response(submit, 1082130433))
    h.broker(order_push(submit.args["order_remark"], 1082130433, mapping.ORDER_JUNK))
    assert h.record().state == REJECTED


def test_the_same_client_order_id_again_returns_the_first_outcome_and_never_orders_twice(h: Harness) -> None:
    [submit] = h.buy()
    h.broker(order_response(submit, 1082130433))
    [again] = h.buy()
    assert isinstance(again, Reply) and again.result["order_id"] == 1082130433
    [other] = h.buy(order_volume=200)
    assert isinstance(other, Refuse) and other.code == errors.DUPLICATE_CLIENT_ORDER_ID


def test_a_repeat_while_in_flight_waits_for_the_same_answer(h: Harness) -> None:
    [submit] = h.buy()
    assert h.buy() == []  # no second Submit
    replies = h.broker(order_response(submit, 1082130433))
    assert [type(r) for r in replies] == [Reply, Reply]
    assert {r.request_id for r in replies} == {1, 2}


def test_an_async_order_is_answered_with_its_seq_and_its_response_is_published(h: Harness) -> None:
    [submit] = h.buy("order_stock_async")
    [reply] = h.broker(Sent(submit.token, submit.spec.kind, 7))
    assert isinstance(reply, Reply) and reply.result == {"seq": 7, "client_order_id": "c1", "order_id": None}
    [published] = h.broker(order_response(submit, 1082130433))
    assert isinstance(published, Publish) and published.event_type == "order_response"
    [again] = h.buy("order_stock_async")
    assert isinstance(again, Reply) and again.result["order_id"] == 1082130433


def test_a_time_out_leaves_the_outcome_unknown_until_a_push_settles_it(h: Harness) -> None:
    [submit] = h.buy()
    assert h.tick(9.9) == []
    [refused] = h.tick(0.2)
    assert isinstance(refused, Refuse) and refused.code == errors.OUTCOME_UNKNOWN
    assert h.record().state == UNKNOWN
    [still] = h.buy()
    assert isinstance(still, Refuse) and still.code == errors.OUTCOME_UNKNOWN
    h.broker(order_push(submit.args["order_remark"], 1082130433, REPORTED))
    assert h.record().state == ACKNOWLEDGED
    [answer] = h.buy()
    assert isinstance(answer, Reply) and answer.result["order_id"] == 1082130433


def test_the_sweep_asks_the_counter_and_settles_an_unknown_order_it_finds(h: Harness) -> None:
    [submit] = h.buy()
    h.tick(10.1)
    actions = h.tick(5.0)  # the sweep is due
    [query] = only(actions, Submit)
    assert query.spec.name == "query_stock_orders" and query.args["cancelable_only"] is False
    found = order_push(submit.args["order_remark"], 1082130433, REPORTED).data
    assert h.broker(Answered(query.token, [found])) == []  # the gateway's own query: no reply
    assert h.record().state == ACKNOWLEDGED


def test_a_lost_connection_makes_outcomes_unknown_and_reconciliation_settles_them(h: Harness) -> None:
    [first] = h.buy()
    [second] = h.buy(client_order_id="c2")
    actions = h.broker(Connection(False, "counter connection lost", 5))
    assert [a.code for a in only(actions, Refuse)] == [errors.OUTCOME_UNKNOWN] * 2
    assert only(actions, Reconnect) and only(actions, Publish)[0].event_type == events.CONNECTION
    [refused] = h.buy(client_order_id="c3")
    assert refused.code == errors.BROKER_UNAVAILABLE
    # The counter has the first order (by its tag), not the second.
    found = order_push(first.args["order_remark"], 1082130433, REPORTED).data
    published = h.broker(Books(ACCOUNT, {"asset": None, "positions": [], "orders": [found], "trades": []}))
    assert h.record("c1").state == ACKNOWLEDGED
    assert h.record("c2").state == NOT_PLACED
    announced = [p.event_type for p in only(published, Publish) if p.data.get("client_order_id") == "c2"]
    assert announced == ["order_response", "order_error"]  # an accepted order's final state, in public
    assert all(p.reconciled for p in only(published, Publish))
    [not_placed] = h.buy(client_order_id="c2")
    assert isinstance(not_placed, Refuse) and not_placed.code == errors.ORDER_NOT_PLACED
    del second


def test_a_failed_broker_call_leaves_an_order_unknown_and_a_query_refused(h: Harness) -> None:
    [submit] = h.buy()
    [refused] = h.broker(Failed(submit.token, errors.BROKER_ERROR, "xtquant refused the call"))
    assert refused.code == errors.OUTCOME_UNKNOWN and h.record().state == UNKNOWN
    [query] = h.command("query_stock_asset")
    [answer] = h.broker(Failed(query.token, errors.BROKER_ERROR, "boom"))
    assert isinstance(answer, Refuse) and answer.code == errors.BROKER_ERROR


def test_queries_and_cancels_are_answered_from_the_broker(h: Harness) -> None:
    [query] = h.command("query_stock_orders")
    found = order_push("QZ0001", 1, REPORTED).data
    [reply] = h.broker(Answered(query.token, [found]))
    assert isinstance(reply, Reply) and reply.op == "query_stock_orders" and reply.result == [found]
    [cancel] = h.command("cancel_order_stock", order_id=1082130433)
    h.broker(Sent(cancel.token, cancel.spec.kind, 9))
    data = {"account_id": ACCOUNT, "cancel_result": 0, "order_id": 1082130433, "order_sysid": "", "seq": 9,
            "error_msg": ""}
    [answer] = h.broker(Responded(cancel.token, cancel.spec.kind, "cancel_response", ACCOUNT, data, 4))
    assert isinstance(answer, Reply) and answer.result["cancel_result"] == 0


def test_a_risk_denial_is_answered_and_at_most_ten_a_second_are_journaled(tmp_path: Path) -> None:
    h = Harness(tmp_path, risk={"max_order_volume": 100})
    outcomes = [h.buy(order_volume=200, client_order_id=f"d{n}") for n in range(15)]
    refusals = [a for actions in outcomes for a in only(actions, Refuse)]
    assert [r.code for r in refusals] == [errors.RISK_DENIED] * 15
    assert refusals[0].details["rule"] == "order.max_volume"
    published = [a for actions in outcomes for a in only(actions, Publish)]
    assert len(published) == 10 and h.desk.risk_events_dropped == 5
    assert h.ledger.get(ACCOUNT, "d0") is None  # a denied order is never recorded
    h.clock.now += 1.0
    assert only(h.buy(order_volume=200, client_order_id="d15"), Publish)


def test_busy_and_disconnected_are_refused_before_the_ledger(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_inflight_per_client=1)
    h.buy()
    [busy] = h.buy(client_order_id="c2")
    assert busy.code == errors.TOO_MANY_REQUESTS and h.ledger.get(ACCOUNT, "c2") is None
    [other_client] = h.command("query_stock_asset", client=b"other")
    assert isinstance(other_client, Submit)


def test_halt_takes_effect_before_it_is_saved_and_an_unsaved_halt_raises_the_storage_alarm(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    (tmp_path / "state").rmdir()  # the kill switch cannot be saved
    result = h.desk.set_trading(HALTED, "test")
    assert result["state"] == HALTED and h.killswitch.state == HALTED
    actions = h.desk.drain()
    assert [c.data["store"] for c in only(actions, Control)] == ["trading-state"]
    assert "trading-state" in h.desk.storage_problems
    [denied] = only(h.buy(), Refuse)
    assert denied.code == errors.RISK_DENIED and h.ledger.get(ACCOUNT, "c1") is None


def test_a_ledger_that_cannot_record_refuses_the_order_and_halts(h: Harness, monkeypatch: Any) -> None:
    def full_disk(*_args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(h.ledger, "create", full_disk)
    actions = h.buy()
    [refused] = only(actions, Refuse)
    assert refused.code == errors.STORAGE_FAILED and not only(actions, Submit)
    assert [c.data["store"] for c in only(actions, Control)] == ["ledger"]
    assert h.killswitch.state == HALTED


def test_a_ledger_that_cannot_be_read_refuses_the_order(h: Harness) -> None:
    h.ledger.close()
    actions = h.buy()
    [refused] = only(actions, Refuse)
    assert refused.code == errors.STORAGE_FAILED and not only(actions, Submit)
    assert h.killswitch.state == HALTED


def test_stopping_answers_everything_in_flight(h: Harness) -> None:
    h.buy()
    h.command("query_stock_asset")
    h.desk.on_stop()
    codes = sorted(r.code for r in only(h.desk.drain(), Refuse))
    assert codes == [errors.BROKER_TIMEOUT, errors.OUTCOME_UNKNOWN]
    assert h.record().state == UNKNOWN and len(h.desk.pending) == 0


def test_halt_with_cancel_open_cancels_every_open_order_through_its_own_queries(h: Harness) -> None:
    h.desk.set_trading(HALTED, "test", cancel_open=True)
    [query] = only(h.desk.drain(), Submit)
    assert query.spec.name == "query_stock_orders" and query.args["cancelable_only"] is True
    open_order = order_push("", 1082130433, REPORTED).data
    [cancel] = h.broker(Answered(query.token, [open_order]))
    assert isinstance(cancel, Submit) and cancel.spec.name == "cancel_order_stock_async"
    assert cancel.args["order_id"] == 1082130433
    [timeout] = h.tick(10.1)  # nobody waits on the gateway's own commands: a refusal to nobody
    assert isinstance(timeout, Refuse) and timeout.envelope == [GATEWAY_CLIENT]


@pytest.mark.parametrize(
    ("op", "args", "code"),
    [
        ("no_such_op", {}, errors.UNKNOWN_OP),
        ("order_stock", {"stock_code": "600000.SH"}, errors.MISSING_ARGUMENT),
        ("query_stock_asset", {"account_id": "999"}, errors.UNKNOWN_ACCOUNT),
    ],
)
def test_admission_names_the_problem(h: Harness, op: str, args: dict[str, Any], code: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        h.desk.admit(op, {"account_id": ACCOUNT, **args}, access.LOCAL)
    assert refused.value.code == code


def test_a_key_without_the_permission_or_the_account_is_refused(h: Harness) -> None:
    reader = ClientKey(name="reader", public_key="", accounts=frozenset({"other"}),
                              permissions=frozenset({"read"}))
    with pytest.raises(ProtocolError) as no_right:
        h.desk.admit("order_stock", {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": "buy",
                                     "order_volume": 100, "price_type": "limit", "price": 10.0}, reader)
    assert no_right.value.code == errors.PERMISSION_DENIED and "permission" in no_right.value.message
    with pytest.raises(ProtocolError) as no_account:
        h.desk.admit("query_stock_asset", {"account_id": ACCOUNT}, reader)
    assert no_account.value.code == errors.PERMISSION_DENIED and ACCOUNT in no_account.value.message
    assert ops.OPS["query_stock_asset"].kind == ops.QUERY


def test_every_gateway_op_has_an_admin_handler() -> None:
    from adapter.server import admin

    gateway_ops = {name for name, spec in ops.OPS.items() if spec.kind == ops.GATEWAY}
    assert gateway_ops == set(admin.HANDLERS)


def test_a_long_answer_is_linked_in_bulk_like_one_by_one(h: Harness) -> None:
    tags = []
    for n in range(3):
        [submit] = h.buy(client_order_id=f"bulk-{n}", order_remark=f"remark-{n}")
        h.broker(order_response(submit, 1082130433 + n))
        tags.append(submit.args["order_remark"])
    h.ledger._recent.clear()  # settled records of earlier in the day: read from disk
    records = [order_push(tag, 1082130433 + n, REPORTED).data for n, tag in enumerate(tags)]
    records.append(order_push("manual", 99, REPORTED).data)  # placed at the terminal: left as it is
    one_by_one = [dict(r) for r in records]
    for data in one_by_one:
        h.desk.link(data)
    h.desk.link_all(records)
    assert records == one_by_one
    assert [(r["client_order_id"], r["order_remark"]) for r in records[:3]] == \
        [(f"bulk-{n}", f"remark-{n}") for n in range(3)]
    assert "client_order_id" not in records[3] or records[3]["client_order_id"] is None


def test_every_store_has_its_storage_series_from_the_start(tmp_path: Path) -> None:
    """A dashboard shows 0 for each store before any failure, not "no data"."""
    from adapter.server.metrics import Metrics

    metrics = Metrics()
    config = Config(accounts=(ACCOUNT,), data_dir=str(tmp_path))
    Desk(config, Ledger(tmp_path), RiskEngine(config.risk_config(), reference_for(config)),
         KillSwitch(tmp_path), BooksView(config.accounts), metrics=metrics)
    series = {sample.labels["store"]: sample.value for family in metrics.registry.collect()
              if family.name == "qmt_adapter_storage_failed" for sample in family.samples}
    assert series == {"journal": 0.0, "ledger": 0.0, "trading-state": 0.0}
