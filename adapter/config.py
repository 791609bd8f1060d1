"""One typed configuration, loaded once from TOML and overridden by flags.

Every setting, its default and meaning is here; ``qmt-adapter serve --help`` and the
README's configuration section are written from these definitions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .protocol import DEFAULT_PUB, DEFAULT_ROUTER  # defined with the protocol: clients use them too
from .protocol import events

DEFAULT_ACCOUNT = "1000000365"
DEFAULT_KEYS_DIR = "qmt-adapter-keys"


class ConfigError(ValueError):
    """A setting that is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class SimConfig:
    """The simulated counter (backend ``sim``)."""

    seed: int = 1  # seeds the price process
    price_model: str = "fixed"  # "fixed": prices stay at their reference; "walk": seeded random walk
    tick_interval: float = 3.0  # seconds between price steps of the walk (QMT pushes quotes every 3 s)
    walk_step: float = 0.002  # relative size of one walk step
    fill_volume: int = 0  # max shares filled per order per matching step; 0 fills at once
    instruments_file: str = ""  # CSV (code,name,prev_close[,last_price]) replacing the built-in table
    cash: float = 1_000_000.0  # starting cash of each account
    commission_rate: float = 0.00025  # of traded amount
    commission_min: float = 5.0  # CNY per trade
    order_latency: float = 0.0  # seconds before the counter takes up an order request (a slow link out)
    ack_delay: float = 0.0  # seconds the counter's responses and pushes are held after its books are written
    persist: bool = True  # keep the books in data_dir/sim-counter.sqlite3 across restarts; false: memory only
    positions: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> code -> shares held since yesterday
    market_hours: str = "always"  # "always": continuous trading at any hour; "exchange": the exchanges' sessions and holidays
    suspended: tuple[str, ...] = ()  # codes suspended today: quoted, never traded

    def validate(self) -> None:
        if self.price_model not in ("fixed", "walk"):
            raise ConfigError(f"sim.price_model must be 'fixed' or 'walk', got {self.price_model!r}")
        if self.tick_interval <= 0:
            raise ConfigError("sim.tick_interval must be > 0")
        if self.fill_volume < 0:
            raise ConfigError("sim.fill_volume must be >= 0")
        if self.order_latency < 0 or self.ack_delay < 0:
            raise ConfigError("sim.order_latency and sim.ack_delay must be >= 0")
        if self.cash < 0 or self.commission_rate < 0 or self.commission_min < 0:
            raise ConfigError("sim.cash, sim.commission_rate and sim.commission_min must be >= 0")
        if self.market_hours not in ("always", "exchange"):
            raise ConfigError(f"sim.market_hours must be 'always' or 'exchange', got {self.market_hours!r}")


@dataclass(frozen=True)
class Config:
    router: str = DEFAULT_ROUTER  # ROUTER endpoint for commands
    pub: str = DEFAULT_PUB  # PUB endpoint for events
    backend: str = "sim"  # "sim" (simulated counter) or "qmt" (a real QMT terminal, Windows)
    qmt_path: str = ""  # QMT's userdata_mini folder (backend qmt)
    sim_process: bool = False  # backend sim: run the counter in its own process (data_dir/sim-qmt), as QMT runs
    session_id: int = 0  # xtquant session id; 0 picks a random one at each start (reconnects always do)
    accounts: tuple[str, ...] = (DEFAULT_ACCOUNT,)  # fund accounts to subscribe and serve
    max_message_size: int = 64 * 1024  # bytes; larger command frames drop the sender's connection
    broker_timeout: float = 10.0  # seconds to wait for the counter before answering broker_timeout
    data_dir: str = "qmt-adapter-data"  # the journal (journal.sqlite3) lives here
    journal_sync: str = "normal"  # "normal": survives a process crash; "full": also a power cut (slower)
    ledger_sync: str = "normal"  # the order ledger (orders.sqlite3): the same choice as journal_sync
    retention_days: float = 7.0  # journaled events older than this are dropped; 0 keeps them by age
    retention_bytes: int = 1 << 30  # payload bytes kept at most; 0: no size bound
    heartbeat_interval: float = 1.0  # seconds between gateway.heartbeat events; 0 disables them
    unknown_sweep_interval: float = 5.0  # seconds between looks at the counter's orders while any is unknown
    pub_hwm: int = 100_000  # events queued per subscriber before PUB drops (recovered from the journal)
    max_inflight_per_client: int = 1_000  # commands one client may have with the counter at once
    max_inflight: int = 20_000  # commands all clients together may have with the counter at once
    router_hwm: int = 10_000  # replies queued per client before ROUTER drops them (a client not reading)
    max_subscriptions: int = 1_024  # distinct subscription prefixes per CURVE key (all subscribers without CURVE)
    max_subscription_bytes: int = 128  # longest subscription prefix; longer ones drop the subscriber's connection
    replay_client_bytes: int = 16 << 20  # replay page bytes one client may have in flight (not yet continued)
    replay_total_bytes: int = 128 << 20  # replay page bytes all clients together may have in flight
    replay_hold: float = 30.0  # seconds a replay page counts as in flight unless the client continues after it
    quote_pub: str = ""  # the quote PUB (PROTOCOL §16); "": the PUB's port + 1
    quote_hwm: int = 10_000  # quotes queued per quote subscriber before they are dropped (latest-value data)
    quote_lease: float = 60.0  # seconds a quote subscription lives unless renewed
    max_quote_codes: int = 10_000  # codes one client key may hold across its quote subscriptions (a market: 3,000)
    market_workers: int = 2  # threads answering market data ops (xtdata calls), never the I/O thread
    market_queue: int = 64  # market data requests waiting at most; beyond, too_many_requests
    market_timeout: float = 10.0  # seconds before a market data request is answered broker_timeout
    download_timeout: float = 600.0  # the same for download_history_data(2)
    curve: bool = False  # CURVE encryption and per-key access on both sockets (keys in keys_dir)
    keys_dir: str = DEFAULT_KEYS_DIR  # server.key_secret and clients/NAME.key (qmt-adapter keys new)
    metrics_port: int = 0  # Prometheus metrics on http://127.0.0.1:PORT/metrics; 0: off
    log_json: bool = False  # log JSON lines instead of text
    insecure: bool = False  # allow binding non-loopback addresses without CURVE
    log_level: str = "INFO"
    sim: SimConfig = field(default_factory=SimConfig)
    risk: dict[str, Any] = field(default_factory=dict)  # [risk] limits (adapter/server/risk.py); reloadable

    def quote_endpoint(self) -> str:
        """Where the quote PUB binds: ``quote_pub``, else next to the PUB (its port + 1)."""
        if self.quote_pub:
            return self.quote_pub
        head, _, port = self.pub.rpartition(":")
        if self.pub.startswith("tcp://") and port.isdigit():
            return f"{head}:{int(port) + 1}"
        if self.pub.startswith("tcp://"):
            return self.pub  # a wildcard port: another wildcard
        return self.pub + "-quotes"  # ipc:// and inproc:// names

    def risk_config(self) -> Any:
        """The parsed ``[risk]`` table (a ``RiskConfig``)."""
        from .server.risk import RiskConfigError, parse_risk

        try:
            return parse_risk(self.risk)
        except RiskConfigError as exc:
            raise ConfigError(str(exc)) from None

    def validate(self) -> None:
        if self.backend not in ("sim", "qmt"):
            raise ConfigError(f"backend must be 'sim' or 'qmt', got {self.backend!r}")
        if self.backend == "qmt" and not self.qmt_path:
            raise ConfigError("backend 'qmt' needs qmt_path (QMT's userdata_mini folder)")
        if not self.accounts:
            raise ConfigError("at least one account is needed")
        if self.max_message_size < 1024:
            raise ConfigError("max_message_size must be at least 1024 bytes")
        if self.broker_timeout <= 0:
            raise ConfigError("broker_timeout must be > 0")
        if self.journal_sync not in ("normal", "full"):
            raise ConfigError(f"journal_sync must be 'normal' or 'full', got {self.journal_sync!r}")
        if self.ledger_sync not in ("normal", "full"):
            raise ConfigError(f"ledger_sync must be 'normal' or 'full', got {self.ledger_sync!r}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port must be 0 (off) or a TCP port")
        if min(self.pub_hwm, self.max_inflight_per_client, self.max_inflight, self.router_hwm) < 1:
            raise ConfigError("pub_hwm, max_inflight_per_client, max_inflight and router_hwm must be >= 1")
        if min(self.max_subscriptions, self.replay_client_bytes, self.replay_total_bytes) < 1 or self.replay_hold <= 0:
            raise ConfigError("max_subscriptions, replay_client_bytes and replay_total_bytes must be >= 1, "
                              "replay_hold > 0")
        longest = max(len(f"{etype}.{account}.".encode()) for etype in events.EVENT_FIELDS
                      if not etype.startswith("gateway.") for account in self.accounts)
        if self.max_subscription_bytes < longest:
            raise ConfigError(f"max_subscription_bytes must be at least {longest}, the longest topic of these accounts")
        if self.retention_days < 0 or self.retention_bytes < 0 or self.heartbeat_interval < 0:
            raise ConfigError("retention_days, retention_bytes and heartbeat_interval must be >= 0")
        if min(self.quote_hwm, self.max_quote_codes, self.market_workers, self.market_queue) < 1 or min(
                self.quote_lease, self.market_timeout, self.download_timeout) <= 0:
            raise ConfigError("quote_hwm, max_quote_codes, market_workers and market_queue must be >= 1; "
                              "quote_lease, market_timeout and download_timeout > 0")
        for name, endpoint in (("router", self.router), ("pub", self.pub), ("quote_pub", self.quote_endpoint())):
            if not self.curve and not self.insecure and not is_local_endpoint(endpoint):
                raise ConfigError(
                    f"refusing to bind {name} {endpoint} without CURVE: anyone who can reach it could "
                    "trade or read the accounts. Turn on --curve (curve = true) with keys from "
                    "'qmt-adapter keys new', or bind a loopback address (127.0.0.1, ::1), "
                    "or pass --insecure (insecure = true) on a network you trust"
                )
        self.sim.validate()
        self.risk_config()


def is_local_endpoint(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: loopback TCP, ipc, inproc."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _coerce(owner: str, name: str, expected: Any, value: Any) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, list):
        return tuple(str(v) for v in value)
    if expected is dict and isinstance(value, dict):
        return value
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise ConfigError(f"{owner}{name} must be {expected.__name__}, got {value!r}")
    return value


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "tuple[str, ...]": tuple, "SimConfig": SimConfig}


def _build(cls: type, data: dict[str, Any], owner: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown setting {owner}{key}")
        type_name = str(known[key].type)
        if type_name == "SimConfig":
            if not isinstance(value, dict):
                raise ConfigError("[sim] must be a table")
            values[key] = _build(SimConfig, value, "sim.")
        elif type_name.startswith("dict"):
            values[key] = _coerce(owner, key, dict, value)
        else:
            values[key] = _coerce(owner, key, _TYPES[type_name], value)
    return cls(**values)


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))  # a BOM from Windows editors is fine
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def load_risk(path: str | Path) -> Any:
    """Only the ``[risk]`` table of a config file, for a reload (other settings need a restart)."""
    data = _read_toml(path).get("risk", {})
    if not isinstance(data, dict):
        raise ConfigError("[risk] must be a table")
    return replace(Config(), risk=data).risk_config()


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read the TOML file (if any), apply the non-None overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
    config = _build(Config, data, "")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "accounts" in changes:
        changes["accounts"] = tuple(changes["accounts"])
    config = replace(config, **changes)
    config.validate()
    return config
