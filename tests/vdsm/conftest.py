"""Fixtures for the vdsm adapter tests (helpers live in ``vdsm_support``)."""

from __future__ import annotations

import pytest
from vdsm_support import VdsmDriver


@pytest.fixture
def vdsm_driver() -> VdsmDriver:
    return VdsmDriver()
