"""``qmt-adapter console --web``: the console in a browser, one app process per page.

textual-serve runs the same console command (without ``--web``) for each browser connection
and carries its screen over a websocket, so the page is the terminal app, not a second UI.
"""

from __future__ import annotations

import ipaddress
import os
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
    """The shell command textual-serve runs per page: this Python, this console, these flags.
    On POSIX the shell ``exec``s it, so the server is the app's parent (see ``end_with_server``)."""
    command = shlex.join([sys.executable, "-m", "adapter", "console", *app_args])
    return command if sys.platform == "win32" else f"exec {command}"


def end_with_server() -> None:
    """In a page's app process on Linux: end when the web server ends, however it ends (kill -9
    included), instead of living on with nobody to draw for."""
    if sys.platform != "linux" or "web_driver" not in os.environ.get("TEXTUAL_DRIVER", ""):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the server ended before the call above: nobody would signal us
        os.kill(os.getpid(), signal.SIGTERM)


def serve(app_args: Sequence[str], host: str, port: int, public_url: str | None = None) -> None:
    """Serve the console at http://host:port until SIGINT or SIGTERM."""
    from textual_serve.server import Server

    server = Server(app_command(app_args), host=host, port=port, title="qmt-adapter console",
                    public_url=public_url)
    server.serve()
