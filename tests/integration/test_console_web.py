"""``qmt-adapter console --web`` in a real headless Chromium, driven through the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import aiohttp  # textual-serve's own web stack; here the DevTools websocket client
import pytest

from adapter.config import SimConfig

from ..conftest import ACCOUNT, free_port, wait_for

WIDTH, HEIGHT = 1280, 800

# textual-serve draws with xterm.js and keeps the terminal object to itself; this catches it as
# it is built (its constructor sets ``terminal`` and then ``fitAddon`` on one object), so the
# test reads the rendered screen through xterm's own buffer API.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "fitAddon", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "fitAddon", {value, writable: true, configurable: true, enumerable: true});
    if (this.terminal && !window.__consoleTerminal) window.__consoleTerminal = this.terminal;
  },
});
"""
READ_SCREEN = """
(() => {
  const terminal = window.__consoleTerminal;
  if (!terminal) return "";
  const buffer = terminal.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i);
    if (line) lines.push(line.translateToString(true));
  }
  return lines.join("\\n");
})()
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it and runs this test")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process group this test started (the web server and the console it runs per page)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a page's console process left behind, if any
    except ProcessLookupError:
        pass


@pytest.fixture
def web_console(gateway_factory: Callable[..., Any], tmp_path: Path) -> Iterator[str]:
    gateway = gateway_factory(sim=SimConfig(positions={ACCOUNT: {"600000.SH": 1000}}))
    port = free_port()
    log = open(tmp_path / "web.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter", "console", "--web", "--host", "127.0.0.1", "--port", str(port),
         "--router", gateway.router_endpoint, "--pub", gateway.pub_endpoint, "--timeout", "5"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: answers(url) or proc.poll() is not None, timeout=30, interval=0.1, what="the web console to serve")
        assert proc.poll() is None, (tmp_path / "web.log").read_text(errors="replace")
        yield url
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[int]:
    """A headless Chromium with the DevTools protocol on a port of its choosing; yields the port."""
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
         f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30, interval=0.1, what="chromium's DevTools port")
        yield int(port_file.read_text().split()[0])
    finally:
        stop(proc)


class DevTools:
    """Commands to one page over the Chrome DevTools Protocol; events are read and dropped."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        await self._socket.send_json({"id": command_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._socket.receive_json(), 30)
            if message.get("id") == command_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result


async def open_and_read(devtools_port: int, url: str, expected: list[str], timeout: float = 30.0) -> tuple[str, bytes]:
    """Load ``url``, wait until the terminal shows every ``expected`` text; the text and a PNG."""
    with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=5) as response:
        pages = [t for t in json.load(response) if t.get("type") == "page"]
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as socket:
        cdp = DevTools(socket)
        await cdp("Page.enable")
        await cdp("Network.enable")
        await cdp("Network.setBlockedURLs", urls=["*://fonts.googleapis.com/*"])  # no network here: fail fast
        await cdp("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        await cdp("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
        await cdp("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        text = ""
        while not all(part in text for part in expected):
            if time.monotonic() > deadline:
                pytest.fail(f"the page did not show {expected} within {timeout} s; it shows:\n{text}")
            await asyncio.sleep(0.2)
            text = (await cdp("Runtime.evaluate", expression=READ_SCREEN, returnByValue=True))["result"].get("value") or ""
        shot = await cdp("Page.captureScreenshot", format="png")
        return text, base64.b64decode(shot["data"])


def png_colours(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct colours of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), f"PNG depth {depth}, colour type {colour_type}"
    step = 4 if colour_type == 6 else 3
    raw, stride = zlib.decompress(b"".join(chunks)), width * step
    previous, colours = bytearray(stride), set()
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = row[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        colours.update(bytes(row[i:i + 3]) for i in range(0, stride, step * 7))  # every 7th pixel is plenty
        previous = row
    return width, height, len(colours)


def test_the_web_console_renders_in_chromium(web_console: str, browser: int) -> None:
    text, png = asyncio.run(open_and_read(browser, web_console, ["NORMAL", ACCOUNT, "600000.SH", "counter connected"]))
    assert "1,000,000.00" in text and "Kill switch" in text, text
    width, height, colours = png_colours(png)
    assert (width, height) == (WIDTH, HEIGHT)
    assert colours >= 8, f"the screenshot looks blank: {colours} colours"
