"""Every acceptance feature on the ``vdsm`` profile with vdsm 4.50's metadata encoding
(the embedding's default), which vdsm's own metadata reader understands.

A scenario that sets the encoding itself still wins; the one that checks the design
encoding's two ``<device>`` elements during a change is skipped here.
"""

from __future__ import annotations

import pytest
from acceptance.conftest import *  # noqa: F403  (the shared steps)
from pytest_bdd import scenarios
from vdsm_support import FEATURES, VdsmDriver

_DESIGN_ENCODING_ONLY = frozenset({
    "test_steps_2_and_3_mark_the_old_cd_ejecting_and_add_the_new_one_loading_before_preparing",
})


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> VdsmDriver:
    if request.node.originalname in _DESIGN_ENCODING_ONLY:
        pytest.skip("checks the design encoding's two <device> elements")
    return VdsmDriver(encoding="vdsm-4.50")


scenarios(*FEATURES)
