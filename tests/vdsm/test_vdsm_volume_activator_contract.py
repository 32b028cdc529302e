"""The VolumeActivator contract, run against VdsmVolumeActivator.

The contract's tests are imported from tests/contracts and run here with this module's
``backend`` fixture: vdsm's dispatcher over the in-memory host (vdsm 4.50 swallowing "in
use", and a vdsm reporting it), and over real loop devices (root only).

One contract test is replaced: it asks for a volume with random pool and domain UUIDs,
which vdsm answers with 309 StoragePoolUnknown, not 201. A pool or domain vdsm cannot see
may be a storage outage with the volume still active, so the adapter must not read it as
"volume does not exist" (which the flows take as "nothing to tear down"); the vdsm variant
below checks 201 for a missing volume of a known domain, and a typed StorageError with
the code for the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from contracts.test_volume_activator_contract import (
    Backend,
    LoopBackend,
    MemoryBackend,
    test_is_active_tracks_prepare_and_teardown,
    test_prepare_is_idempotent,
    test_prepare_returns_block_media_at_the_volume_path,
    test_resolve_path_of_a_missing_file_is_image_file_not_found,
    test_resolve_path_of_an_existing_file,
    test_teardown_of_a_held_volume_is_refused_and_leaves_it_active,
    test_teardown_of_an_inactive_volume_succeeds,
)
from ovirt_cdrom.adapters.vdsm.fake import FakeVdsmStorage, MemoryProbe
from ovirt_cdrom.adapters.vdsm.storage import (
    STORAGE_DOMAIN_DOES_NOT_EXIST,
    STORAGE_POOL_UNKNOWN,
    VdsmVolumeActivator,
)
from ovirt_cdrom.domain.errors import StorageError, VolumeNotFound
from ovirt_cdrom.domain.model import VolumeRef
from rig import DOMAIN, POOL
from storage.realdev import LoopSandbox, loop_sandbox
from vdsm_support import LoopProbe, LoopReportingVdsmStorage, LoopVdsmStorage

__all__ = [
    "test_is_active_tracks_prepare_and_teardown",
    "test_prepare_is_idempotent",
    "test_prepare_returns_block_media_at_the_volume_path",
    "test_resolve_path_of_a_missing_file_is_image_file_not_found",
    "test_resolve_path_of_an_existing_file",
    "test_teardown_of_a_held_volume_is_refused_and_leaves_it_active",
    "test_teardown_of_an_inactive_volume_succeeds",
]

def _volume() -> VolumeRef:
    """A new volume in the pool and domain this host is connected to (the rig's)."""
    return VolumeRef(POOL, DOMAIN, str(uuid.uuid4()), str(uuid.uuid4()))


class FakeVdsmBackend(MemoryBackend):
    """The contract's in-memory backend, reached through vdsm's dispatcher fake."""

    def __init__(self, swallow_in_use: bool) -> None:
        super().__init__()
        self.storage = FakeVdsmStorage(self.host, swallow_in_use=swallow_in_use)
        self.storage.connect(POOL, DOMAIN)
        self.activator = VdsmVolumeActivator(self.storage, MemoryProbe(self.host))

    def add_volume(self) -> VolumeRef:
        volume = _volume()
        self.host.add_volume(volume)
        return volume


class LoopVdsmBackend(LoopBackend):
    """The contract's loop backend, behind a vdsm-shaped dispatcher facade."""

    def __init__(self, sandbox: LoopSandbox, reporting: bool) -> None:
        super().__init__(sandbox)
        loop = sandbox.activator()
        facade = LoopReportingVdsmStorage(loop) if reporting else LoopVdsmStorage(loop)
        self.activator = VdsmVolumeActivator(facade, LoopProbe(loop))

    def add_volume(self) -> VolumeRef:
        volume = _volume()
        self.sandbox.add_volume(volume)
        return volume


@pytest.fixture(params=["fake-vdsm-4.50", "fake-reporting-in-use",
                        pytest.param("loop-vdsm-4.50", marks=pytest.mark.root),
                        pytest.param("loop-reporting-in-use", marks=pytest.mark.root)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    if name.startswith("fake"):
        yield FakeVdsmBackend(swallow_in_use=name.endswith("4.50"))
        return
    with loop_sandbox(tmp_path) as sandbox:
        yield LoopVdsmBackend(sandbox, reporting=name.endswith("in-use"))


def test_a_volume_storage_does_not_have_is_not_found(backend: Backend) -> None:
    missing = _volume()

    with pytest.raises(VolumeNotFound):
        backend.activator.prepare(missing)
    with pytest.raises(VolumeNotFound):
        backend.activator.teardown(missing)
    assert not backend.activator.is_active(missing)


@pytest.mark.parametrize(("pool", "domain", "code"), [
    (str(uuid.uuid4()), DOMAIN, STORAGE_POOL_UNKNOWN),
    (POOL, str(uuid.uuid4()), STORAGE_DOMAIN_DOES_NOT_EXIST),
], ids=["unknown-pool", "unknown-domain"])
def test_an_unreachable_pool_or_domain_is_a_storage_error_not_a_missing_volume(
        pool: str, domain: str, code: int) -> None:
    backend = FakeVdsmBackend(swallow_in_use=True)
    volume = VolumeRef(pool, domain, str(uuid.uuid4()), str(uuid.uuid4()))

    for call in (backend.activator.prepare, backend.activator.teardown):
        with pytest.raises(StorageError) as caught:
            call(volume)
        assert not isinstance(caught.value, VolumeNotFound)
        assert caught.value.fields["storage_code"] == code
        assert f"({code})" in caught.value.message
