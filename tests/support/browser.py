"""A real browser for the console's tests: Debian's headless Chromium driven by Selenium
through Debian's chromedriver.

Both binaries are named by path, so Selenium Manager never runs and nothing is downloaded.
The browser gets a fresh profile in the test's temporary directory and no background
traffic of its own (no sync, no component updates, no QUIC), so every request it makes is
one the page asked for; `Browser.requests` lists them from the DevTools performance log.
Screenshots go to `test-artefacts/console/NN-name.png` in the checkout (CI keeps them) and
beside the test's temporary files.

Without the browser a test is skipped with the reason on a developer's machine; under
`CI=true` it fails instead, as the sandbox tests do without bubblewrap.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from app.settings import CHECKOUT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = CHECKOUT_ROOT / "test-artefacts" / "console"
PHONE = (412, 915)
DESKTOP = (1280, 900)
TALLEST_SHOT = 8000  # px: a screenshot of a long page stops here
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--metrics-recording-only",
    "--safebrowsing-disable-auto-update", "--password-store=basic",
]  # fmt: skip


def unavailable(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it under CI, which must run the browser."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the console's browser test for real")
    pytest.skip(reason)


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            return f"{binary} is missing (apt install {package})"
    return None


@dataclass
class Browser:
    """The driver, and what the test saw through it."""

    driver: webdriver.Chrome
    shots: Path  # the test's own copy of the screenshots
    taken: list[Path] = field(default_factory=list)
    console: list[dict[str, Any]] = field(default_factory=list)  # the browser's log entries
    # Every request the browser made: (the document that asked, the URL asked for).
    requests: list[tuple[str, str]] = field(default_factory=list)

    def get(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str, timeout: float = 10) -> WebElement:
        """The first element matching `css`, once it is there."""
        found: WebElement = WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )
        return found

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def button(self, text: str, within: str = "main") -> WebElement:
        """The button whose text is `text` (inside `within`)."""
        for candidate in self.all(f"{within} button"):
            if candidate.text.strip() == text:
                return candidate
        labels = [b.text.strip() for b in self.all(f"{within} button")]
        raise AssertionError(f"no button {text!r} on {self.driver.current_url}; buttons: {labels}")

    def accept_confirm(self, expect: str | None = None, timeout: float = 5) -> str:
        """Accept the window.confirm the last click raised; its text."""
        alert = WebDriverWait(self.driver, timeout).until(expected_conditions.alert_is_present())
        text = alert.text
        if expect is not None:
            assert expect in text, text
        alert.accept()
        return text

    def wait(self, condition: Any, timeout: float = 30, message: str = "") -> Any:
        """Wait until `condition(driver)` is truthy (Selenium's wait, with the page on timeout).
        An element replaced while it is read (a part of the page refreshing itself) is read
        again at the next poll."""
        try:
            return WebDriverWait(
                self.driver, timeout, poll_frequency=0.1,
                ignored_exceptions=(StaleElementReferenceException,),
            ).until(condition)  # fmt: skip
        except WebDriverException as exc:
            raise AssertionError(
                f"{message or condition} (after {timeout} s on {self.driver.current_url}):\n"
                + self.driver.find_element(By.TAG_NAME, "body").text[:3000]
            ) from exc

    def shot(self, name: str) -> Path:
        """Save a screenshot of the whole page as the next `NN-name.png`."""
        self.drain()
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        width = self.driver.execute_script("return window.innerWidth")
        clip = {
            "x": 0, "y": 0, "width": max(int(size["width"]), int(width)),
            "height": min(int(size["height"]), TALLEST_SHOT), "scale": 1,
        }  # fmt: skip
        png = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        name = f"{len(self.taken) + 1:02d}-{name}.png"
        data = base64.b64decode(png["data"])
        for directory in (ARTEFACTS, self.shots):
            (directory / name).write_bytes(data)
        self.taken.append(ARTEFACTS / name)
        return ARTEFACTS / name

    def resize(self, size: tuple[int, int]) -> None:
        self.driver.set_window_size(*size)

    def drain(self) -> None:
        """Move the browser's console log and the requests made so far into this record."""
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                params = message["params"]
                self.requests.append((params.get("documentURL", ""), params["request"]["url"]))

    def problems(self) -> list[str]:
        """Console errors and CSP violations (a missing favicon is no problem: the console
        has none, and the browser asks the server's root for it anyway)."""
        self.drain()
        found = []
        for entry in self.console:
            text = str(entry.get("message", ""))
            if "/favicon.ico" in text:
                continue
            if entry.get("level") == "SEVERE" or "Content Security Policy" in text:
                found.append(text)
        return found

    def elsewhere(self, origin: str) -> list[str]:
        """What the pages asked for anywhere but `origin` (data: URLs are their own). The
        browser's own pages (chrome://, such as the start page) are not the console's."""
        self.drain()
        return [f"{url} (from {document})" for document, url in self.requests
                if not document.startswith(("chrome://", "chrome-untrusted://"))
                and not url.startswith((origin + "/", "data:"))]  # fmt: skip


def options(profile: Path, size: tuple[int, int]) -> webdriver.ChromeOptions:
    chosen = webdriver.ChromeOptions()
    chosen.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        chosen.add_argument(flag)
    chosen.add_argument(f"--window-size={size[0]},{size[1]}")
    chosen.add_argument(f"--user-data-dir={profile}")
    chosen.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # A confirm left open is the test's to answer, not the driver's to dismiss.
    chosen.unhandled_prompt_behavior = "ignore"
    return chosen


def clear_artefacts() -> None:
    """A fresh artefacts directory: screenshots of an earlier run would mislead."""
    if ARTEFACTS.exists():
        shutil.rmtree(ARTEFACTS)
    ARTEFACTS.mkdir(parents=True)


@contextmanager
def browser(tmp_path: Path, size: tuple[int, int] = DESKTOP) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile; skipped (failed under CI) when it is missing.
    The driver and the browser are gone when the block ends, however it ends."""
    reason = missing()
    if reason is not None:
        unavailable(reason)
    profile = tmp_path / "chromium-profile"
    shots = tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    clear_artefacts()
    # The service names the driver, so Selenium Manager is never asked (it would download).
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options(profile, size))
    except WebDriverException as exc:
        service.stop()
        unavailable(f"Chromium did not start: {exc.msg or exc}")
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()
