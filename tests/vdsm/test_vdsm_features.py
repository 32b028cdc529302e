"""Every acceptance feature again, on the ``vdsm`` adapter profile, design encoding.

The steps are the acceptance suite's own; only the driver differs: volumes are prepared
and torn down through ``VdsmVolumeActivator`` over ``FakeVdsmStorage`` (vdsm's status
dicts, 201 for a missing volume, "in use" swallowed as vdsm 4.50 does).
test_vdsm_features_450.py runs them again with vdsm 4.50's metadata encoding.
"""

from __future__ import annotations

import pytest
from acceptance.conftest import *  # noqa: F403  (the shared steps)
from pytest_bdd import scenarios
from vdsm_support import FEATURES, VdsmDriver


@pytest.fixture
def driver() -> VdsmDriver:
    return VdsmDriver(encoding="design")


scenarios(*FEATURES)
