from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, message: str = "") -> Any:
    """Poll until `condition()` is truthy; fail the test with `message` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {message or condition}")
        time.sleep(0.05)
