"""End to end inside a vdsm-like process: a real QEMU VM, real loop devices.

The product is built with :func:`bootstrap_vdsm` exactly as vdsm would build it: the
domain lookup hands out a libvirt domain object this test opened itself (as vdsm holds
its own), and the storage object is a vdsm-shaped dispatcher (status dicts, vdsm 4.50's
swallowed "in use") over the loop activator. Metadata is vdsm 4.50's encoding.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import in_ci, unavailable

libvirt: Any
try:
    import libvirt
except ImportError:
    libvirt = None
if not hasattr(libvirt, "open"):  # missing, or tests/libvirt imported as a namespace package
    if in_ci():
        raise ImportError("CI=true but libvirt-python is not installed")
    pytest.skip("libvirt-python is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libvirt"))
from ovirt_cdrom.adapters import metadata_xml  # noqa: E402
from ovirt_cdrom.adapters.libvirt.hypervisor import LibvirtHypervisor  # noqa: E402
from ovirt_cdrom.adapters.loop import LoopVolumeActivator  # noqa: E402
from ovirt_cdrom.adapters.vdsm.domains import VdsmDomains  # noqa: E402
from ovirt_cdrom.domain.model import EMPTY_TRAY, VmId  # noqa: E402
from ovirt_cdrom.domain.state import Changing, DriveState, Loaded  # noqa: E402
from ovirt_cdrom.embedding import VdsmCdrom, bootstrap_vdsm  # noqa: E402
from realvm import SDC, UNRELATED_METADATA, RealHost  # noqa: E402
from rig import SUCCESS, spec, volume  # noqa: E402
from vdsm_support import LoopProbe, LoopVdsmStorage  # noqa: E402

pytestmark = pytest.mark.libvirt


class Vdsm:
    """What vdsm holds (its domain object, its storage) and the product it embeds."""

    def __init__(self, real: RealHost) -> None:
        self.real = real
        self.vm = real.create_vm(metadata=UNRELATED_METADATA)
        self.dom = real.domain(self.vm)  # opened by this test, as vdsm holds its own
        self.isos = {name: volume(name) for name in ("fedora", "debian")}
        for iso in self.isos.values():
            real.add_volume(iso)
        real.settle(self.vm)
        self.loop = LoopVolumeActivator(real.storage_root, real.run_root)
        self.storage = LoopVdsmStorage(self.loop)
        self.reloaded: list[str] = []
        self.cdrom: VdsmCdrom = bootstrap_vdsm(
            self.lookup, self.storage, vm_ids=lambda: [self.vm.value],
            probe=LoopProbe(self.loop), on_metadata_written=self.reloaded.append)

    def lookup(self, vm_id: str) -> Any:
        return {self.vm.value: self.dom}[vm_id]

    def change_cd(self, iso: str | None) -> dict[str, Any]:
        return self.cdrom.changeCD(self.vm.value, self.spec(iso))

    def spec(self, iso: str | None) -> dict[str, Any]:
        return spec(None if iso is None else self.isos[iso])

    def tray(self) -> str:
        """Which of the ISOs the VM's tray holds (the live XML), or ``empty``."""
        held = self.real.trays(self.vm)[SDC]
        if held == EMPTY_TRAY:
            return "empty"
        return next((name for name, v in self.isos.items() if v.in_tray(held)), str(held))

    def active(self) -> list[str]:
        return sorted(n for n, v in self.isos.items() if self.loop.is_active(v))

    def state(self) -> DriveState:
        """What the metadata says (``virsh metadata``, the product's codec)."""
        return self.real.state(self.vm)

    def cd_elements(self) -> list[Any]:
        block = self.real.block(self.vm)
        return [el for el in block.iterchildren(f"{{{metadata_xml.NS}}}device")
                if el.get("name") == "sdc"]


@pytest.fixture
def vdsm() -> Iterator[Vdsm]:
    uri = os.environ.get("OVIRT_CDROM_TEST_LIBVIRT_URI", "qemu:///system")
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError as err:
        unavailable(f"libvirtd unreachable at {uri}: {err}")
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        unavailable("loop devices need root and losetup")
    real = RealHost(uri)
    try:
        yield Vdsm(real)
    finally:
        real.cleanup()


def test_insert_change_eject_through_vdsm_objects(vdsm: Vdsm) -> None:
    assert vdsm.change_cd("fedora") == SUCCESS
    assert (vdsm.tray(), vdsm.active(), vdsm.state()) == (
        "fedora", ["fedora"], Loaded(vdsm.isos["fedora"]))
    assert vdsm.real.violations(vdsm.vm) == []

    assert vdsm.change_cd("debian") == SUCCESS
    assert (vdsm.tray(), vdsm.active(), vdsm.state()) == (
        "debian", ["debian"], Loaded(vdsm.isos["debian"]))
    assert vdsm.real.violations(vdsm.vm) == []

    assert vdsm.change_cd(None) == SUCCESS
    assert (vdsm.tray(), vdsm.active()) == ("empty", [])
    assert [len(el) for el in vdsm.cd_elements()] == [0]  # the empty <device name="sdc"/>
    assert vdsm.real.violations(vdsm.vm) == []  # unrelated metadata unchanged among them
    # Storage went through vdsm's verbs only; vdsm was told to reload after each write.
    assert [c.split()[0] for c in vdsm.storage.calls] == [
        "prepareImage", "prepareImage", "teardownImage", "teardownImage"]
    assert vdsm.reloaded and set(vdsm.reloaded) == {vdsm.vm.value}


def test_a_missing_volume_is_cannot_prepare_image_naming_vdsm_code(vdsm: Vdsm) -> None:
    assert vdsm.change_cd("fedora") == SUCCESS
    vdsm.isos["missing"] = volume("missing")  # no image file: storage does not have it

    answer = vdsm.change_cd("missing")

    assert answer["code"] == 1630
    assert "VolumeDoesNotExist (201)" in answer["message"]
    assert (vdsm.tray(), vdsm.active(), vdsm.state()) == (
        "fedora", ["fedora"], Loaded(vdsm.isos["fedora"]))
    assert vdsm.real.violations(vdsm.vm) == []


def test_recovery_of_an_interrupted_change_in_vdsm_450_encoding(vdsm: Vdsm) -> None:
    """A change that died after the tray switched: vdsm 4.50's nested <change> remains."""
    assert vdsm.change_cd("fedora") == SUCCESS
    fedora, debian = vdsm.isos["fedora"], vdsm.isos["debian"]
    media = vdsm.loop.prepare(debian)
    LibvirtHypervisor(VdsmDomains(vdsm.lookup)).load(vdsm.vm, SDC, media)
    md = vdsm.cdrom.app.core.metadata()
    md.write(vdsm.vm, SDC, Changing(fedora, debian))
    (element,) = vdsm.cd_elements()
    assert element.find(f"{{{metadata_xml.NS}}}change") is not None
    assert vdsm.real.violations(vdsm.vm, settled=False) == []

    report = vdsm.cdrom.recover_vm(vdsm.vm.value)

    assert report.clean, report
    assert [d.case for d in report.drives] == ["change.4"]
    assert (vdsm.tray(), vdsm.active(), vdsm.state()) == ("debian", ["debian"], Loaded(debian))
    assert vdsm.real.violations(vdsm.vm) == []


def test_an_unknown_vm_is_no_such_vm(vdsm: Vdsm) -> None:
    answer = vdsm.cdrom.changeCD(str(uuid.uuid4()), vdsm.spec("fedora"))

    assert answer["code"] == 1
    assert vdsm.active() == []
    assert vdsm.storage.calls == []


def test_vm_id_parsing_in_recovery_is_typed(vdsm: Vdsm) -> None:
    report = vdsm.cdrom.recover_vm("not-a-uuid")

    assert not report.clean
    assert [e.code for e in report.vm_errors.values()] == [100]
    assert VmId(vdsm.vm.value) not in report.vm_errors


def test_a_vm_vdsm_drops_while_recovery_runs_is_reported_gone(vdsm: Vdsm) -> None:
    """vdsm lists the VM, then the VM is destroyed (its domain object goes away) before
    recovery reads it: nothing is left to recover, and that is no error."""
    assert vdsm.change_cd("fedora") == SUCCESS
    listed = [vdsm.vm.value]
    cdrom = bootstrap_vdsm(lambda vm_id: None, vdsm.storage, vm_ids=lambda: listed,
                           probe=LoopProbe(vdsm.loop))
    report = cdrom.recover_vm(vdsm.vm.value)
    assert report.clean and report.gone == [vdsm.vm] and not report.vm_errors
