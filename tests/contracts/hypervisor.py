"""The Hypervisor contract: what any adapter must do, the in-memory one and libvirt alike.

A test class inherits :class:`HypervisorContract` and provides a ``hv_env`` fixture
returning a :class:`HypervisorEnv`: a running VM with an empty CD-ROM ``sdc``, and media
that exist (block media of the ISO volumes :func:`volume`, at paths that follow vdsm's
layout; files) or do not. :func:`memory_hv_env` is the in-memory host's.

What a tray holds is a :data:`~ovirt_cdrom.domain.model.Tray`, resolved by the adapter: the
empty tray, the volume it holds (``VolumeTray``: the same volume whatever root its path is
under) or the file (``FileTray``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from ovirt_cdrom.adapters.memory import MemoryHost, MemoryHypervisor
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.domain.errors import (
    HypervisorError,
    HypervisorTimeout,
    NoSuchDrive,
    NoSuchVM,
)
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DiskType,
    DriveName,
    FileTray,
    Media,
    Tray,
    VmId,
    VolumeRef,
    VolumeTray,
)
from ovirt_cdrom.ports import Hypervisor
from rig import vm_id
from rig import volume as named_volume

SDC = DriveName("sdc")
SDZ = DriveName("sdz")


def volume(n: int) -> VolumeRef:
    """The n-th ISO volume of the contract."""
    return named_volume(("hypervisor-contract", n))


def tray_of_volume(n: int) -> Tray:
    v = volume(n)
    return VolumeTray(v.domain_id, v.image_id, v.volume_id)


@dataclass
class HypervisorEnv:
    hypervisor: Hypervisor
    vm: VmId
    block_media: Callable[[int], Media]  # volume(n) as a block medium at vdsm's path for it
    file_media: Callable[[int], Media]  # the n-th existing file medium
    missing_media: Media  # a block medium that does not exist


def unknown_vm() -> VmId:
    return vm_id("hypervisor-contract: no such VM")


def memory_hv_env() -> HypervisorEnv:
    """The in-memory host: a VM with an empty sata/2 drive; volume(n) active on demand."""
    host = MemoryHost()
    vm = vm_id("hypervisor-contract")
    host.add_vm(vm)
    host.add_drive(vm, "sata", 2)

    def block_media(n: int) -> Media:
        host.add_volume(volume(n), active=True)
        return Media(block_path(volume(n)), DiskType.BLOCK)

    return HypervisorEnv(MemoryHypervisor(host), vm, block_media,
                         lambda n: Media(f"/iso/file-{n}.iso", DiskType.FILE),
                         Media("/dev/ovirt-cdrom-missing", DiskType.BLOCK))


class HypervisorContract:
    def test_lists_the_running_vm(self, hv_env: HypervisorEnv) -> None:
        assert hv_env.vm in hv_env.hypervisor.vm_ids()

    def test_new_vm_has_an_empty_cdrom(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        assert hv.cdroms(hv_env.vm) == {SDC: EMPTY_TRAY}
        assert hv.cdrom(hv_env.vm, SDC) == EMPTY_TRAY

    def test_running_vm_is_not_migrating(self, hv_env: HypervisorEnv) -> None:
        assert hv_env.hypervisor.is_migrating(hv_env.vm) is False

    @pytest.mark.parametrize("kind", [DiskType.BLOCK, DiskType.FILE], ids=["block", "file"])
    def test_load_puts_the_media_in_the_tray(self, hv_env: HypervisorEnv,
                                             kind: DiskType) -> None:
        if kind is DiskType.BLOCK:
            media, held = hv_env.block_media(1), tray_of_volume(1)
        else:
            media = hv_env.file_media(1)
            held = FileTray(media.path)
        hv_env.hypervisor.load(hv_env.vm, SDC, media)
        assert hv_env.hypervisor.cdrom(hv_env.vm, SDC) == held
        assert hv_env.hypervisor.cdroms(hv_env.vm) == {SDC: held}

    def test_a_loaded_volume_is_recognised_in_the_tray(self, hv_env: HypervisorEnv) -> None:
        hv_env.hypervisor.load(hv_env.vm, SDC, hv_env.block_media(1))
        tray = hv_env.hypervisor.cdrom(hv_env.vm, SDC)
        assert volume(1).in_tray(tray)
        assert not volume(2).in_tray(tray)

    def test_load_replaces_what_the_tray_held(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.block_media(2))
        assert hv.cdrom(hv_env.vm, SDC) == tray_of_volume(2)

    def test_load_same_media_twice_is_harmless(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        assert hv.cdrom(hv_env.vm, SDC) == tray_of_volume(1)

    def test_switch_from_block_to_file_media(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.file_media(1))
        assert hv.cdrom(hv_env.vm, SDC) == FileTray(hv_env.file_media(1).path)

    def test_eject_empties_the_tray(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.eject(hv_env.vm, SDC)
        assert hv.cdrom(hv_env.vm, SDC) == EMPTY_TRAY

    def test_eject_of_an_empty_tray_succeeds(self, hv_env: HypervisorEnv) -> None:
        hv_env.hypervisor.eject(hv_env.vm, SDC)
        assert hv_env.hypervisor.cdrom(hv_env.vm, SDC) == EMPTY_TRAY

    def test_load_of_missing_media_fails_and_keeps_the_old_cd(
            self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        with pytest.raises(HypervisorError) as caught:
            hv.load(hv_env.vm, SDC, hv_env.missing_media)
        assert not isinstance(caught.value, HypervisorTimeout)
        assert hv.cdrom(hv_env.vm, SDC) == tray_of_volume(1)

    @pytest.mark.parametrize("call", ["cdroms", "cdrom", "is_migrating", "load", "eject"])
    def test_unknown_vm_is_no_such_vm(self, hv_env: HypervisorEnv, call: str) -> None:
        hv, vm = hv_env.hypervisor, unknown_vm()
        calls: dict[str, Callable[[], object]] = {
            "cdroms": lambda: hv.cdroms(vm),
            "cdrom": lambda: hv.cdrom(vm, SDC),
            "is_migrating": lambda: hv.is_migrating(vm),
            "load": lambda: hv.load(vm, SDC, hv_env.block_media(1)),
            "eject": lambda: hv.eject(vm, SDC),
        }
        with pytest.raises(NoSuchVM):
            calls[call]()

    @pytest.mark.parametrize("call", ["cdrom", "load", "eject"])
    def test_unknown_drive_is_no_such_drive(self, hv_env: HypervisorEnv, call: str) -> None:
        hv, vm = hv_env.hypervisor, hv_env.vm
        calls: dict[str, Callable[[], object]] = {
            "cdrom": lambda: hv.cdrom(vm, SDZ),
            "load": lambda: hv.load(vm, SDZ, hv_env.block_media(1)),
            "eject": lambda: hv.eject(vm, SDZ),
        }
        with pytest.raises(NoSuchDrive):
            calls[call]()
        assert hv.cdroms(vm) == {SDC: EMPTY_TRAY}
