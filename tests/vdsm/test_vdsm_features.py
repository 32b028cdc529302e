"""Every acceptance feature again, on the rig's ``vdsm`` profile, design encoding.

The steps are the acceptance suite's own; only the rig's profile differs: volumes are
prepared and torn down through ``VdsmVolumeActivator`` over ``FakeVdsmStorage`` (vdsm's
status dicts, 201 for a missing volume, "in use" swallowed as vdsm 4.50 does).
test_vdsm_features_450.py runs them again with vdsm 4.50's metadata encoding.
"""

from __future__ import annotations

import pytest
from acceptance.conftest import *  # noqa: F403  (the shared steps)
from acceptance.driver import AcceptanceDriver
from ovirt_cdrom.adapters.metadata_xml import Encoding
from pytest_bdd import scenarios
from vdsm_support import FEATURES, vdsm_driver


@pytest.fixture
def driver() -> AcceptanceDriver:
    return vdsm_driver(Encoding.DESIGN)


scenarios(*FEATURES)
