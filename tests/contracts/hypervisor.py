"""The Hypervisor contract: what any adapter must do, the in-memory one and libvirt alike.

A test class inherits :class:`HypervisorContract` and provides a ``hv_env`` fixture
returning a :class:`HypervisorEnv`: a running VM with an empty CD-ROM ``sdc``, and media
that exist (a block device, a file) or do not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from ovirt_cdrom.domain.errors import (
    HypervisorError,
    HypervisorTimeout,
    NoSuchDrive,
    NoSuchVM,
)
from ovirt_cdrom.domain.model import DiskType, DriveName, Media, VmId
from ovirt_cdrom.ports import Hypervisor

SDC = DriveName("sdc")
SDZ = DriveName("sdz")


@dataclass
class HypervisorEnv:
    hypervisor: Hypervisor
    vm: VmId
    block_media: Callable[[int], Media]  # the n-th existing block medium
    file_media: Callable[[int], Media]  # the n-th existing file medium
    missing_media: Media  # a block medium that does not exist


def unknown_vm() -> VmId:
    return VmId(str(uuid.uuid4()))


class HypervisorContract:
    def test_lists_the_running_vm(self, hv_env: HypervisorEnv) -> None:
        assert hv_env.vm in hv_env.hypervisor.vm_ids()

    def test_new_vm_has_an_empty_cdrom(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        assert hv.cdroms(hv_env.vm) == {SDC: None}
        assert hv.cdrom(hv_env.vm, SDC) is None

    def test_running_vm_is_not_migrating(self, hv_env: HypervisorEnv) -> None:
        assert hv_env.hypervisor.is_migrating(hv_env.vm) is False

    @pytest.mark.parametrize("kind", [DiskType.BLOCK, DiskType.FILE], ids=["block", "file"])
    def test_load_puts_the_media_in_the_tray(self, hv_env: HypervisorEnv,
                                             kind: DiskType) -> None:
        media = hv_env.block_media(1) if kind is DiskType.BLOCK else hv_env.file_media(1)
        hv_env.hypervisor.load(hv_env.vm, SDC, media)
        assert hv_env.hypervisor.cdrom(hv_env.vm, SDC) == media.path
        assert hv_env.hypervisor.cdroms(hv_env.vm) == {SDC: media.path}

    def test_load_replaces_what_the_tray_held(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.block_media(2))
        assert hv.cdrom(hv_env.vm, SDC) == hv_env.block_media(2).path

    def test_load_same_media_twice_is_harmless(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        assert hv.cdrom(hv_env.vm, SDC) == hv_env.block_media(1).path

    def test_switch_from_block_to_file_media(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.load(hv_env.vm, SDC, hv_env.file_media(1))
        assert hv.cdrom(hv_env.vm, SDC) == hv_env.file_media(1).path

    def test_eject_empties_the_tray(self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        hv.eject(hv_env.vm, SDC)
        assert hv.cdrom(hv_env.vm, SDC) is None

    def test_eject_of_an_empty_tray_succeeds(self, hv_env: HypervisorEnv) -> None:
        hv_env.hypervisor.eject(hv_env.vm, SDC)
        assert hv_env.hypervisor.cdrom(hv_env.vm, SDC) is None

    def test_load_of_missing_media_fails_and_keeps_the_old_cd(
            self, hv_env: HypervisorEnv) -> None:
        hv = hv_env.hypervisor
        hv.load(hv_env.vm, SDC, hv_env.block_media(1))
        with pytest.raises(HypervisorError) as caught:
            hv.load(hv_env.vm, SDC, hv_env.missing_media)
        assert not isinstance(caught.value, HypervisorTimeout)
        assert hv.cdrom(hv_env.vm, SDC) == hv_env.block_media(1).path

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
        assert hv.cdroms(vm) == {SDC: None}
