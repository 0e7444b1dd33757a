"""A minimal W3C WebDriver client (httpx) for Debian's chromedriver + headless chromium.

No selenium or playwright needed: chromedriver speaks plain JSON over HTTP. Only the calls the
dashboard test uses are here.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, port_open, stop, wait_for

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def available() -> bool:
    return CHROMIUM.exists() and (CHROMEDRIVER.exists() or shutil.which("chromedriver") is not None)


class WebDriverError(AssertionError):
    pass


class Browser:
    def __init__(self, http: httpx.Client, session_id: str) -> None:
        self.http = http
        self.base = f"/session/{session_id}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, self.base + path, json=body)
        value = r.json().get("value")
        if r.status_code >= 400:
            raise WebDriverError(f"{method} {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def size(self, width: int, height: int) -> None:
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def find(self, css: str) -> str:
        return str(self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def js(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script: str, *args: Any) -> Any:
        """``script`` calls its last argument with the result."""
        return self._call("POST", "/execute/async", {"script": script, "args": list(args)})

    def text(self, css: str) -> str:
        return str(self.js("const e = document.querySelector(arguments[0]); "
                           "return e ? e.innerText : null;", css))  # fmt: skip

    def wait_text(self, css: str, expected: str, timeout: float = 15) -> None:
        wait_for(lambda: expected in (self.text(css) or ""), timeout=timeout, interval=0.1)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))


@contextmanager
def chromium(width: int = 1280, height: int = 900, *, offline: bool = False) -> Iterator[Browser]:
    """A headless chromium driven by chromedriver on a free port; both stopped on exit.
    ``offline``: it reaches 127.0.0.1 only (no name resolves, every other address goes to a
    closed proxy port), as on a network without internet access."""
    port = free_port()
    driver = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = Path(tempfile.mkdtemp(prefix="smsa-chromium-"))
    try:
        wait_for(lambda: port_open(port) or driver.poll() is not None, timeout=15)
        assert driver.poll() is None, "chromedriver exited"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", f"--user-data-dir={profile}",
                    f"--window-size={width},{height}"]  # fmt: skip
            if offline:
                args += [
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--proxy-server=http://127.0.0.1:9",
                    "--proxy-bypass-list=127.0.0.1",
                ]
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": str(CHROMIUM), "args": args},
            }}}  # fmt: skip
            r = http.post("/session", json=caps)
            if r.status_code >= 400:
                raise WebDriverError(f"no browser session: {r.json().get('value')}")
            session_id = r.json()["value"]["sessionId"]
            try:
                yield Browser(http, session_id)
            finally:
                http.delete(f"/session/{session_id}")
    finally:
        stop(driver)
        shutil.rmtree(profile, ignore_errors=True)
