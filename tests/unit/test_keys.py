"""Key files, rights and the rules that turn them into subscriptions and op checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq
import zmq.auth

from adapter import keys
from adapter.config import ConfigError, load_config
from adapter.keys import (
    ClientKey,
    KeyFileError,
    client_curve_keys,
    ensure_server_key,
    load_client_keys,
    new_client_key,
    parse_accounts,
    parse_permissions,
    revoke_client_key,
)
from adapter.protocol import encode_event, ops
from adapter.server import access

READ = frozenset({"read"})


def test_key_files_round_trip_through_zmq_auth(tmp_path: Path) -> None:
    server, created = ensure_server_key(tmp_path)
    assert created and ensure_server_key(tmp_path) == (server, False)
    public_path, secret_path = new_client_key(tmp_path, "alpha", frozenset({"1", "2"}), frozenset({"trade", "read"}))
    public, secret = zmq.auth.load_certificate(secret_path)  # the standard loader reads our files
    assert secret and zmq.auth.load_certificate(public_path) == (public, None)
    assert (secret_path.stat().st_mode & 0o777) == 0o600 and (public_path.stat().st_mode & 0o077) == 0o044
    loaded = load_client_keys(tmp_path)
    assert list(loaded) == [public.decode()]
    alpha = loaded[public.decode()]
    assert (alpha.name, alpha.accounts, alpha.permissions) == ("alpha", frozenset({"1", "2"}), frozenset({"read", "trade"}))
    curve = client_curve_keys(secret_path, server)
    assert curve is not None and curve.public_key == public and curve.secret_key == secret
    server_public = zmq.auth.load_certificate(server)[0]
    assert client_curve_keys(secret_path, server_public.decode()).server_key == server_public  # inline Z85


def test_names_are_never_reused_and_revocation_moves_the_file(tmp_path: Path) -> None:
    new_client_key(tmp_path, "alpha", None, READ)
    with pytest.raises(KeyFileError, match="exists"):
        new_client_key(tmp_path, "alpha", None, READ)
    moved = revoke_client_key(tmp_path, "alpha")
    assert moved.parent.name == "revoked" and load_client_keys(tmp_path) == {}
    with pytest.raises(KeyFileError, match="exists"):
        new_client_key(tmp_path, "alpha", None, READ)
    with pytest.raises(KeyFileError, match="no authorised key"):
        revoke_client_key(tmp_path, "alpha")


@pytest.mark.parametrize("name", ["", "server", "a b", "x" * 65, "../up"])
def test_bad_key_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError):
        new_client_key(tmp_path, name, None, READ)


def test_rights_parse_strictly() -> None:
    assert parse_accounts("*") is None and parse_accounts(" 1, 2 ") == frozenset({"1", "2"})
    assert parse_permissions("read,admin") == frozenset({"read", "admin"})
    for bad in ("", "write", "read,root"):
        with pytest.raises(KeyFileError):
            parse_permissions(bad)
    with pytest.raises(KeyFileError):
        parse_accounts(" , ")


def test_a_broken_or_doubled_client_file_stops_the_load(tmp_path: Path) -> None:
    public_path, _ = new_client_key(tmp_path, "alpha", None, READ)
    (tmp_path / "clients" / "copy.key").write_text(public_path.read_text())
    with pytest.raises(KeyFileError, match="twice"):
        load_client_keys(tmp_path)
    (tmp_path / "clients" / "copy.key").write_text(public_path.read_text().replace('permissions = "read"', 'permissions = "root"'))
    with pytest.raises(KeyFileError, match="copy.key"):
        load_client_keys(tmp_path)


def test_client_keys_come_in_pairs_and_must_be_secret(tmp_path: Path) -> None:
    server, _ = ensure_server_key(tmp_path)
    public_path, secret_path = new_client_key(tmp_path, "alpha", None, READ)
    assert client_curve_keys(None, None) is None
    with pytest.raises(KeyFileError, match="both"):
        client_curve_keys(secret_path, None)
    with pytest.raises(KeyFileError, match="no secret key"):
        client_curve_keys(public_path, server)
    with pytest.raises(KeyFileError, match="no such key file"):
        client_curve_keys(tmp_path / "missing.key_secret", server)


def test_the_libzmq_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    keys.check_libzmq()  # this machine's libzmq is new enough
    monkeypatch.setattr(zmq, "zmq_version_info", lambda: (4, 3, 1))
    with pytest.raises(KeyFileError, match="older than 4.3.2"):
        keys.check_libzmq()


def test_curve_allows_a_network_bind_and_the_message_says_how(tmp_path: Path) -> None:
    assert load_config(None, router="tcp://0.0.0.0:5555", curve=True).curve
    with pytest.raises(ConfigError, match="--curve"):
        load_config(None, router="tcp://0.0.0.0:5555")


# -- rights -> ops and subscriptions -----------------------------------------------------


def key(accounts: frozenset[str] | None, *permissions: str) -> ClientKey:
    return ClientKey("k", "", accounts, frozenset(permissions))


def test_every_op_needs_a_known_permission() -> None:
    needs = {name: access.permission_for(spec) for name, spec in ops.OPS.items()}
    assert needs["ping"] is None and needs["reload"] == "admin"
    assert needs["order_stock"] == needs["cancel_order_stock_sysid_async"] == "trade"
    assert needs["query_stock_asset"] == needs["replay"] == needs["snapshot"] == "read"
    assert needs["get_full_tick"] == needs["subscribe_quote"] == needs["download_history_data2"] == "quote"
    assert set(needs.values()) <= {None, "read", "trade", "admin", "quote"}


def test_read_implies_quote_and_quote_alone_reads_no_account() -> None:
    assert access.has_permission(key(None, "read"), "quote")
    assert access.has_permission(key(None, "quote"), "quote")
    assert not access.has_permission(key(None, "trade"), "quote")
    assert not access.has_permission(key(None, "quote"), "read")


def test_subscriptions_are_narrowed_to_the_keys_accounts() -> None:
    scoped = access.allowed_prefixes(key(frozenset({"100"}), "read"))
    assert scoped is not None and "gateway." in scoped and "order.100." in scoped
    assert access.narrow("", scoped) == sorted(scoped)  # everything becomes: everything it may see
    assert access.narrow("order.", scoped) == ["order.100."]
    assert access.narrow("order.100.", scoped) == ["order.100."]
    assert access.narrow("order.1000.", scoped) == []
    assert access.narrow("order", scoped) == ["order.100.", "order_error.100.", "order_response.100."]
    assert access.narrow("gateway.pong", scoped) == ["gateway.pong"]
    assert access.narrow("x", access.allowed_prefixes(key(None, "trade"))) == []  # no read: no events
    assert access.narrow("x", access.allowed_prefixes(key(None, "read"))) == ["x"]


def test_a_granted_prefix_never_matches_another_accounts_topic() -> None:
    scoped = access.allowed_prefixes(key(frozenset({"100"}), "read"))
    assert scoped is not None
    for event_type in access.ACCOUNT_EVENT_TYPES:
        for account, visible in (("100", True), ("1000", False), ("10", False)):
            topic = encode_event(1, 1, event_type, account, {}, "e")[0].decode()
            assert any(topic.startswith(p) for p in scoped) == visible, topic


def test_losing_any_right_counts_as_revocation() -> None:
    old = key(frozenset({"1", "2"}), "read", "trade")
    assert access._narrower(key(frozenset({"1"}), "read", "trade"), old)
    assert access._narrower(key(frozenset({"1", "2"}), "read"), old)
    assert not access._narrower(key(frozenset({"1", "2", "3"}), "read", "trade", "admin"), old)
    assert access._narrower(key(frozenset({"1"}), "read"), key(None, "read"))
    assert not access._narrower(key(None, "read", "trade"), old)


def test_a_secret_key_given_inline_is_never_repeated_in_the_error() -> None:
    import zmq

    from adapter.keys import KeyFileError, client_curve_keys

    public, secret = zmq.curve_keypair()
    with pytest.raises(KeyFileError) as refused:
        client_curve_keys(secret.decode(), public.decode())
    assert secret.decode() not in str(refused.value) and "not shown" in str(refused.value)
