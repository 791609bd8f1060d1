"""``qmt-adapter console --web``: the console in a browser, one app process per page.

textual-serve runs the same console command (without ``--web``) for each browser connection
and carries its screen over a websocket, so the page is the terminal app, not a second UI.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from typing import Sequence


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_command(app_args: Sequence[str]) -> str:
    """The shell command textual-serve runs per page: this Python, this console, these flags."""
    return shlex.join([sys.executable, "-m", "adapter", "console", *app_args])


def serve(app_args: Sequence[str], host: str, port: int, public_url: str | None = None) -> None:
    """Serve the console at http://host:port until SIGINT or SIGTERM."""
    from textual_serve.server import Server

    server = Server(app_command(app_args), host=host, port=port, title="qmt-adapter console",
                    public_url=public_url)
    server.serve()
