"""The LVM activator against real LVM metadata on a loop device (root only).

A volume group named by a fresh UUID is created on a loop device, with logical volumes
created inactive (``--driverloaded n``, ``--activate n``, ``--zero n``) so that no
device-mapper is needed. Listing, tag lookup and "not found" run everywhere; activation
needs device-mapper and skips, saying so, where it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from needs import unavailable
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.adapters.runner import SubprocessRunner
from ovirt_cdrom.domain.errors import StorageError, VolumeInUse, VolumeNotFound
from ovirt_cdrom.domain.model import DiskType, VolumeRef

from .realdev import Holder, device_mapper_unavailable, lvm_listing, require_root

pytestmark = pytest.mark.root

MiB = 1024 * 1024
LV_SIZE = 4 * MiB


@dataclass
class Domain:
    """A block storage domain on a loop device: VG ``sd``, images and their volumes."""

    sd: str
    pv: str
    images: dict[str, list[str]]  # image UUID -> volume UUIDs (LV names)
    untagged: str

    def volume(self, image: str, index: int = 0) -> VolumeRef:
        return VolumeRef(str(uuid.UUID(int=0)), self.sd, image, self.images[image][index])


def _lvm(conf: str, *args: str) -> None:
    result = SubprocessRunner(timeout=60).run(["lvm", args[0], "--config", conf, *args[1:]])
    if not result.ok:
        raise RuntimeError(f"lvm {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Domain]:
    require_root()
    if shutil.which("lvm") is None:
        unavailable("lvm2 is not installed")
    backing = tmp_path_factory.mktemp("lvm") / "pv.img"
    with backing.open("wb") as f:
        f.truncate(64 * MiB)
    with ExitStack() as cleanup:
        pv = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
        cleanup.callback(subprocess.run, ["losetup", "--detach", pv], check=False)
        # Only our loop device, no archives or backups left in /etc/lvm.
        conf = (f'devices {{ filter=["a|^{pv}$|", "r|.*|"] use_devicesfile=0 '
                f'obtain_device_list_from_udev=0 hints="none" write_cache_state=0 }} '
                f"backup {{ backup=0 archive=0 }}")
        sd = str(uuid.uuid4())
        _lvm(conf, "pvcreate", "--yes", pv)
        cleanup.callback(_lvm, conf, "pvremove", "--yes", pv)
        _lvm(conf, "vgcreate", sd, pv)
        cleanup.callback(_lvm, conf, "vgremove", "--driverloaded", "n", "--force", sd)
        images = {str(uuid.uuid4()): [str(uuid.uuid4())],
                  str(uuid.uuid4()): [str(uuid.uuid4()), str(uuid.uuid4())]}
        for image, volumes in images.items():
            for vol in volumes:
                _lvm(conf, "lvcreate", "--driverloaded", "n", "--activate", "n", "--zero", "n",
                     "--size", f"{LV_SIZE}b", "--name", vol, "--addtag", f"IU_{image}",
                     "--addtag", "PU_00000000-0000-0000-0000-000000000000", sd)
        _lvm(conf, "lvcreate", "--driverloaded", "n", "--activate", "n", "--zero", "n",
             "--size", f"{LV_SIZE}b", "--name", "metadata", sd)
        yield Domain(sd, pv, images, "metadata")


@pytest.fixture
def activator(tmp_path: Path, domain: Domain) -> LvmVolumeActivator:
    # Links under tmp_path; LVM's device nodes where LVM puts them.
    return LvmVolumeActivator(root=tmp_path, devices={domain.sd: [domain.pv]},
                              search_devices=[domain.pv], dev=Path("/dev"))


def test_lvm_sees_the_group_on_the_domains_device(domain: Domain,
                                                  activator: LvmVolumeActivator) -> None:
    found = lvm_listing(activator, domain.sd)

    expected = {v for vols in domain.images.values() for v in vols} | {domain.untagged}
    assert set(found) == expected
    for image, volumes in domain.images.items():
        for vol in volumes:
            assert f"IU_{image}" in found[vol]


def test_the_filter_hides_devices_outside_the_domain(tmp_path: Path, domain: Domain) -> None:
    elsewhere = LvmVolumeActivator(root=tmp_path, devices={domain.sd: ["/dev/null-device"]})

    with pytest.raises(VolumeNotFound):
        lvm_listing(elsewhere, domain.sd)


@pytest.mark.parametrize("operation", ["prepare", "teardown"])
def test_missing_volume_is_volume_not_found(tmp_path: Path, domain: Domain,
                                            activator: LvmVolumeActivator,
                                            operation: str) -> None:
    missing = VolumeRef(str(uuid.UUID(int=0)), domain.sd, str(uuid.uuid4()), str(uuid.uuid4()))

    with pytest.raises(VolumeNotFound, match="Failed to find logical volume"):
        getattr(activator, operation)(missing)

    assert not (tmp_path / "run").exists()


def test_without_device_mapper_activation_fails_loudly(
        tmp_path: Path, domain: Domain, activator: LvmVolumeActivator) -> None:
    reason = device_mapper_unavailable()
    if reason is None:
        pytest.skip("device-mapper works here; activation is tested for real below")
    volume = domain.volume(next(iter(domain.images)))

    with pytest.raises(StorageError) as info:
        activator.prepare(volume)

    assert type(info.value) is StorageError
    assert "device-mapper" in str(info.value)
    assert not activator.is_active(volume)
    assert not (tmp_path / "run").exists()


def test_activation_round_trip(tmp_path: Path, domain: Domain,
                               activator: LvmVolumeActivator) -> None:
    reason = device_mapper_unavailable()
    if reason is not None:
        pytest.skip(reason)
    volume = domain.volume(next(iter(domain.images)))
    try:
        media = activator.prepare(volume)
        assert media.disk_type is DiskType.BLOCK
        assert activator.is_active(volume)
        assert os.path.realpath(media.path) == os.path.realpath(activator.device_path(volume))
        assert activator.prepare(volume) == media  # refresh
        with ExitStack() as stack:
            holder = Holder(media.path)
            stack.callback(holder.release)
            with pytest.raises(VolumeInUse):
                activator.teardown(volume)
            assert os.path.lexists(media.path)
        activator.teardown(volume)
        assert not activator.is_active(volume)
        assert not os.path.lexists(media.path)
    finally:
        if activator.is_active(volume):
            activator.teardown(volume)
