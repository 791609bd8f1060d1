"""CURVE key files: the server's pair, authorised client certificates, client key loading.

Files use the ZPL certificate format ``zmq.auth`` reads and writes (``zmq.auth.load_certificate``
loads them), with the client's rights in the ``metadata`` section. The keys directory::

    server.key            the server's public certificate: give it to every client
    server.key_secret     the server's secret key: never leaves this host
    clients/NAME.key      an authorised client: public key, accounts, permissions
    private/NAME.key_secret   written by ``keys new``: hand it to that client, then delete it here
    revoked/NAME.key      a revoked client (``keys revoke``), kept for the record
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

PERMISSIONS = ("read", "trade", "admin", "quote")
ALL_ACCOUNTS = "*"
SERVER = "server"
KEY_LENGTH = 40  # a Z85-encoded CURVE key
MIN_LIBZMQ = (4, 3, 2)  # CURVE and ZAP fixes (CVE-2019-6250, CVE-2019-13132)

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_METADATA = re.compile(r'^\s+([A-Za-z0-9_-]+)\s*=\s*"(.*)"\s*$')


class KeyFileError(ValueError):
    """A key file or key setting that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ClientKey:
    """An authorised client: who it is, which accounts, which permissions."""

    name: str
    public_key: str  # Z85
    accounts: frozenset[str] | None  # None: every account the gateway serves
    permissions: frozenset[str]
    path: str = ""

    def describe_accounts(self) -> str:
        return ALL_ACCOUNTS if self.accounts is None else ",".join(sorted(self.accounts))


@dataclass(frozen=True)
class CurveKeys:
    """What a client needs: its own pair and the server's public key (all Z85 bytes)."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


def check_libzmq() -> None:
    """Refuse CURVE on a libzmq without the CURVE fixes or without CURVE at all."""
    version = zmq.zmq_version_info()
    if version < MIN_LIBZMQ:
        raise KeyFileError(
            f"libzmq {zmq.zmq_version()} is older than {'.'.join(map(str, MIN_LIBZMQ))}, which fixes CURVE "
            "security bugs; upgrade pyzmq (pip install -U pyzmq) or run without CURVE on loopback only"
        )
    if not zmq.has("curve"):
        raise KeyFileError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE; reinstall pyzmq from its wheels")


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == SERVER:
        raise KeyFileError(f"key name {name!r} must be 1-64 of A-Z a-z 0-9 _ . - and not {SERVER!r}")
    return name


def parse_permissions(text: str) -> frozenset[str]:
    wanted = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = wanted - set(PERMISSIONS)
    if unknown or not wanted:
        raise KeyFileError(f"permissions must be a comma list of {', '.join(PERMISSIONS)}; got {text!r}")
    return wanted


def parse_accounts(text: str) -> frozenset[str] | None:
    if text.strip() == ALL_ACCOUNTS:
        return None
    accounts = frozenset(a.strip() for a in text.split(",") if a.strip())
    if not accounts:
        raise KeyFileError(f"accounts must be a comma list of account ids or {ALL_ACCOUNTS!r}; got {text!r}")
    return accounts


# -- writing -----------------------------------------------------------------------------


def _write_cert(path: Path, public: bytes, secret: bytes | None, metadata: dict[str, str]) -> None:
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ****  Generated on {dt.datetime.now().isoformat(timespec='seconds')} by qmt-adapter  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        "#   Exchange securely, or use a secure mechanism to verify the contents",
        "#   of this file after exchange.",
        "",
        "metadata",
        *(f'    {key} = "{value}"' for key, value in metadata.items()),
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    path.parent.mkdir(parents=True, exist_ok=True)
    # Secret files are created private, not chmod-ed after the fact.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("\n".join(lines) + "\n")


def ensure_server_key(keys_dir: str | Path) -> tuple[Path, bool]:
    """The server's public certificate, creating the pair if missing; (path, created)."""
    root = Path(keys_dir)
    public, secret = root / f"{SERVER}.key", root / f"{SERVER}.key_secret"
    if secret.exists():
        return public, False
    if public.exists():
        raise KeyFileError(f"{public} exists without {secret.name}; restore the secret or remove both")
    pub, sec = zmq.curve_keypair()
    _write_cert(secret, pub, sec, {"name": SERVER})
    _write_cert(public, pub, None, {"name": SERVER})
    return public, True


def new_client_key(
    keys_dir: str | Path, name: str, accounts: frozenset[str] | None, permissions: frozenset[str]
) -> tuple[Path, Path]:
    """Authorise a new client: its certificate in clients/, its secret in private/."""
    check_name(name)
    root = Path(keys_dir)
    public_path, secret_path = root / "clients" / f"{name}.key", root / "private" / f"{name}.key_secret"
    for path in (public_path, secret_path, root / "revoked" / f"{name}.key"):
        if path.exists():
            raise KeyFileError(f"{path} exists; pick another name (names are never reused, so logs stay unambiguous)")
    pub, sec = zmq.curve_keypair()
    metadata = {
        "name": name,
        "accounts": ALL_ACCOUNTS if accounts is None else ",".join(sorted(accounts)),
        "permissions": ",".join(p for p in PERMISSIONS if p in permissions),
    }
    _write_cert(secret_path, pub, sec, {"name": name})
    _write_cert(public_path, pub, None, metadata)
    return public_path, secret_path


def revoke_client_key(keys_dir: str | Path, name: str) -> Path:
    root = Path(keys_dir)
    source = root / "clients" / f"{check_name(name)}.key"
    if not source.exists():
        raise KeyFileError(f"no authorised key named {name!r} in {source.parent}")
    target = root / "revoked" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)
    return target


# -- reading -----------------------------------------------------------------------------


def _metadata(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            section = line.strip()
            continue
        match = _METADATA.match(line)
        if match and section == "metadata":
            values[match.group(1)] = match.group(2)
    return values


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    if not public or len(public) != KEY_LENGTH:
        raise KeyFileError(f"{path} holds no valid public key")
    return public, secret


def load_server_secret(keys_dir: str | Path) -> tuple[bytes, bytes]:
    path = Path(keys_dir) / f"{SERVER}.key_secret"
    if not path.exists():
        raise KeyFileError(f"no server key at {path}; create one with: qmt-adapter keys new NAME --keys-dir {keys_dir}")
    public, secret = _load(path)
    if not secret:
        raise KeyFileError(f"{path} holds no secret key")
    return public, secret


def load_client_keys(keys_dir: str | Path) -> dict[str, ClientKey]:
    """Authorised clients by Z85 public key; a file that cannot be used stops the load."""
    folder = Path(keys_dir) / "clients"
    found: dict[str, ClientKey] = {}
    names: set[str] = set()
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else ():
        public, _ = _load(path)
        meta = _metadata(path)
        name = meta.get("name", path.stem)
        try:
            check_name(name)
            client = ClientKey(
                name=name,
                public_key=public.decode("ascii"),
                accounts=parse_accounts(meta.get("accounts", "")),
                permissions=parse_permissions(meta.get("permissions", "")),
                path=str(path),
            )
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None
        if client.public_key in found or name in names:
            raise KeyFileError(f"{path}: the same key or name is authorised twice")
        found[client.public_key] = client
        names.add(name)
    return found


def read_key(value: str | os.PathLike[str], *, secret: bool, what: str) -> tuple[bytes, bytes | None]:
    """A certificate file, or (public keys only) a 40-character Z85 key given inline."""
    text = os.fspath(value)
    if not secret and len(text) == KEY_LENGTH and not Path(text).exists():
        try:
            z85.decode(text)
        except (ValueError, KeyError):
            raise KeyFileError(f"{what}: {text!r} is neither a key file nor a Z85 key") from None
        return text.encode("ascii"), None
    path = Path(text)
    if not path.is_file():
        if secret and _looks_like_key(text):  # a secret pasted inline: never repeat it
            raise KeyFileError(f"{what}: give the NAME.key_secret file, not a key inline (the text is not shown)")
        raise KeyFileError(f"{what}: no such key file {path}")
    public, secret_key = _load(path)
    if secret and not secret_key:
        raise KeyFileError(f"{what}: {path} holds no secret key (use the NAME.key_secret file)")
    return public, secret_key


def _looks_like_key(text: str) -> bool:
    if len(text) != KEY_LENGTH:
        return False
    try:
        z85.decode(text)
    except (ValueError, KeyError):
        return False
    return True


def client_curve_keys(
    client_key: str | os.PathLike[str] | None, server_key: str | os.PathLike[str] | None
) -> CurveKeys | None:
    """Both or neither: the client's secret certificate and the server's public key."""
    if client_key is None and server_key is None:
        return None
    if client_key is None or server_key is None:
        raise KeyFileError("CURVE needs both a client key (NAME.key_secret) and the server's key (server.key)")
    public, secret = read_key(client_key, secret=True, what="client key")
    server, _ = read_key(server_key, secret=False, what="server key")
    assert secret is not None
    return CurveKeys(public, secret, server)


def apply_client_curve(socket: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    if keys is not None:
        socket.curve_serverkey = keys.server_key
        socket.curve_publickey = keys.public_key
        socket.curve_secretkey = keys.secret_key
