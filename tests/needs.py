"""What a test needs from the machine, and what to do when it is missing.

Outside CI a missing tool or daemon skips the test. Under ``CI=true`` it fails it: CI
installs and starts everything itself (.ci/run), so something missing there is a broken
install step, not a reason to skip. Only what CI cannot have (device-mapper on this
kernel) may skip there.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI=true fail, the current test because ``reason``."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
