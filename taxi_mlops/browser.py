"""Open a local HTML page in headless Chromium and check what a reader would see: it loads,
every image is decoded and on screen, nothing is logged as an error; save a screenshot.

Chromium is driven over the DevTools protocol (a websocket), so no driver or browser download
is needed: Debian's ``chromium`` package is enough.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import TaxiMlopsError
from shared.services import http_json

logger = logging.getLogger(__name__)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    # a container's /dev/shm can be too small for the renderer, which then hangs at start
    "--disable-dev-shm-usage",
]
#: a machine with no session bus: chromium otherwise waits on D-Bus calls that never answer
_ENV = {"DBUS_SESSION_BUS_ADDRESS": "disabled:"}
#: a start that hangs (seen once in CI on a loaded 2-core runner) is retried in a new profile
START_ATTEMPTS = 2

_IMAGES = """JSON.stringify({
  title: document.title,
  tables: document.querySelectorAll("table").length,
  images: Array.from(document.images).map(img => {
    const r = img.getBoundingClientRect();
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, width: r.width, height: r.height,
            display: getComputedStyle(img).display, visibility: getComputedStyle(img).visibility};
  })
})"""


class BrowserError(TaxiMlopsError):
    """Chromium is missing or did not answer."""


@dataclass
class PageCheck:
    title: str
    tables: int
    images: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)
    screenshot: str = ""

    @property
    def problems(self) -> list[str]:
        found = list(self.errors)
        if not self.images:
            found.append("the page has no image")
        for image in self.images:
            visible = (
                image["complete"]
                and image["naturalWidth"] > 0
                and image["width"] > 0
                and image["height"] > 0
                and image["display"] != "none"
                and image["visibility"] == "visible"
            )
            if not visible:
                found.append(f"image {image['alt']!r} is not visible: {image}")
        return found


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=None, open_timeout=10)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout_s: float = 30.0) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == event:
                return
        raise BrowserError(f"no {event} within {timeout_s:.0f} s")

    def close(self) -> None:
        self.socket.close()


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
    return found


def check_page(
    page: Path, screenshot: Path, chromium: str | None = None, timeout_s: float = 60.0
) -> PageCheck:
    """Load ``page`` (a local file), check it and save a full-page PNG to ``screenshot``."""
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError("chromium is not installed (Debian: apt-get install chromium)")
    for attempt in range(2, START_ATTEMPTS + 1):
        try:
            return _check_in_new_browser(binary, page, screenshot, timeout_s)
        except _StartError as exc:
            logger.warning("%s; starting chromium again (attempt %d)", exc, attempt)
    try:
        return _check_in_new_browser(binary, page, screenshot, timeout_s)
    except _StartError as exc:
        raise BrowserError(str(exc)) from None


class _StartError(Exception):
    """Chromium did not come up: worth one more try in a new profile."""


def _check_in_new_browser(binary: str, page: Path, screenshot: Path, timeout_s: float) -> PageCheck:
    with tempfile.TemporaryDirectory(prefix="taxi-mlops-chromium-") as scratch:
        profile, log = Path(scratch) / "profile", Path(scratch) / "chromium.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(  # noqa: S603 - a fixed browser command line
                [
                    binary,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    "--window-size=1280,900",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **_ENV},
                start_new_session=True,
            )
        try:
            port = _devtools_port(process, profile, log, timeout_s)
            return _check(port, page, screenshot, timeout_s)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        process.wait(timeout=10)


def _log_tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(text) if text else "nothing on stderr"


def _devtools_port(process: subprocess.Popen, profile: Path, log: Path, timeout_s: float) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None:
            raise _StartError(
                f"chromium exited with {process.returncode} before it listened: {_log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise _StartError(
                f"chromium did not open its DevTools port within {timeout_s:.0f} s: "
                f"{_log_tail(log)}"
            )
        time.sleep(0.1)
    return port_file.read_text().split()[0]


def _check(port: str, page: Path, screenshot: Path, timeout_s: float) -> PageCheck:
    _, targets = http_json("GET", f"http://127.0.0.1:{port}/json/list")
    (target,) = [t for t in targets if t.get("type") == "page"][:1]
    tools = _DevTools(target["webSocketDebuggerUrl"])
    try:
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=page.resolve().as_uri())
        tools.wait_for("Page.loadEventFired", timeout_s)
        evaluated = tools.call("Runtime.evaluate", expression=_IMAGES, returnByValue=True)
        seen = json.loads(evaluated["result"]["value"])
        metrics = tools.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = tools.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return PageCheck(
            title=seen["title"],
            tables=seen["tables"],
            images=seen["images"],
            errors=_errors(tools.events),
            screenshot=str(screenshot),
        )
    finally:
        tools.close()
