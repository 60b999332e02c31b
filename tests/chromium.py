"""A page rendered by Debian's headless Chromium, measured by JavaScript through the
DevTools protocol over a pipe (``--remote-debugging-pipe``: NUL-separated JSON on file
descriptors 3 and 4), so nothing is downloaded and no port is opened."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Debian's binary (bootstrap.sh installs the package for the tests).
BINARY = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--remote-debugging-pipe")
#: Seconds to wait for the browser and the page.
TIMEOUT = 60


def available() -> bool:
    return shutil.which(BINARY) is not None


class Browser:
    """One headless Chromium with a fresh profile; a context manager."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="aggregame-chromium-")
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()

        def wire() -> None:  # in the child: its fds 3 and 4 are the pipe's ends
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.proc = subprocess.Popen(
            [shutil.which(BINARY), *FLAGS, f"--user-data-dir={self.profile}",
             "about:blank"], pass_fds=(3, 4), preexec_fn=wire,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands)
        os.close(replies)
        self._buffer, self._next = b"", 0

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)

    def _send(self, method: str, params: dict | None = None,
              session: str | None = None) -> int:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None,
             session: str | None = None) -> dict:
        """Send one command and return its result (raise on a protocol error)."""
        ident = self._send(method, params, session)
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self._receive(deadline).get("method") != event:
            pass

    def evaluate(self, page: Path, script: str, width: int = 1280,
                 height: int = 900) -> Any:
        """Load ``page`` in a window ``width`` x ``height`` and return the value of
        ``script`` (a JavaScript expression) once the page has loaded."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False}, session)
        self.call("Page.enable", session=session)
        self.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
        self.wait_for("Page.loadEventFired")
        result = self.call("Runtime.evaluate", {"expression": script,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"]["value"]
