"""Every acceptance feature on the rig's ``vdsm`` profile with vdsm 4.50's metadata
encoding (the embedding's default), which vdsm's own metadata reader understands.

A scenario that sets the encoding itself still wins; the one that checks the design
encoding's two ``<device>`` elements during a change is skipped here.
"""

from __future__ import annotations

import pytest
from acceptance.conftest import *  # noqa: F403  (the shared steps)
from acceptance.driver import AcceptanceDriver
from ovirt_cdrom.adapters.metadata_xml import Encoding
from pytest_bdd import scenarios
from vdsm_support import FEATURES, vdsm_driver

_DESIGN_ENCODING_ONLY = frozenset({
    "test_steps_2_and_3_mark_the_old_cd_ejecting_and_add_the_new_one_loading_before_preparing",
})


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> AcceptanceDriver:
    if request.node.originalname in _DESIGN_ENCODING_ONLY:
        pytest.skip("checks the design encoding's two <device> elements")
    return vdsm_driver(Encoding.VDSM_450)


scenarios(*FEATURES)
