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
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt  # noqa: E402
from ovirt_cdrom.adapters.loop import LoopVolumeActivator  # noqa: E402
from ovirt_cdrom.adapters.vdsm.domain import VdsmDomainHypervisor, VdsmDomains  # noqa: E402
from ovirt_cdrom.domain.model import (  # noqa: E402
    CdEntry,
    DriveName,
    EntryState,
    Unreadable,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.embedding import VdsmCdrom, bootstrap_vdsm  # noqa: E402
from realvm import UNRELATED_METADATA, RealHost  # noqa: E402
from vdsm_support import LoopProbe, LoopVdsmStorage  # noqa: E402

pytestmark = pytest.mark.libvirt

POOL = "5e3b2a10-0d0f-4c3e-9a51-7d3c1f0e2b4a"
DOMAIN = "0e9b1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
SDC = DriveName("sdc")


def _iso() -> VolumeRef:
    return VolumeRef(POOL, DOMAIN, str(uuid.uuid4()), str(uuid.uuid4()))


class Vdsm:
    """What vdsm holds (its domain object, its storage) and the product it embeds."""

    def __init__(self, real: RealHost) -> None:
        self.real = real
        self.vm = real.create_vm(metadata=UNRELATED_METADATA)
        self.dom = real.domain(self.vm)  # opened by this test, as vdsm holds its own
        self.isos = {"fedora": _iso(), "debian": _iso()}
        for volume in self.isos.values():
            real.add_volume(volume)
        self.loop = LoopVolumeActivator(real.storage_root, real.run_root)
        self.storage = LoopVdsmStorage(self.loop)
        self.reloaded: list[str] = []
        self.cdrom: VdsmCdrom = bootstrap_vdsm(
            self.lookup, self.storage, vm_ids=lambda: [self.vm.value],
            probe=LoopProbe(self.loop), on_metadata_written=self.reloaded.append)

    def lookup(self, vm_id: str) -> Any:
        return {self.vm.value: self.dom}[vm_id]

    def spec(self, iso: str | None) -> dict[str, Any]:
        drive_spec = None if iso is None else {"device": "cdrom", **self.isos[iso].as_dict()}
        return {"iface": "sata", "index": "2", "drive_spec": drive_spec}

    def change_cd(self, iso: str | None) -> dict[str, Any]:
        return self.cdrom.changeCD(self.vm.value, self.spec(iso))

    def tray(self) -> str:
        held = self.real.trays(self.vm)[SDC]
        if held is None:
            return "empty"
        return next(name for name, v in self.isos.items() if v.is_at(held))

    def active(self) -> list[str]:
        return sorted(n for n, v in self.isos.items() if self.loop.is_active(v))

    def block(self) -> Any:
        return from_libvirt(self.dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                              metadata_xml.NS, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def entries(self) -> tuple[CdEntry, ...]:
        entries = metadata_xml.read_entries(self.block(), SDC)
        assert not isinstance(entries, Unreadable), entries
        return entries

    def cd_elements(self) -> list[Any]:
        return [el for el in self.block().iterchildren(f"{{{metadata_xml.NS}}}device")
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
    unrelated_before = _unrelated(vdsm.block())

    assert vdsm.change_cd("fedora") == {"vmList": {}}
    assert (vdsm.tray(), vdsm.active(), vdsm.entries()) == (
        "fedora", ["fedora"], (CdEntry(None, vdsm.isos["fedora"]),))

    assert vdsm.change_cd("debian") == {"vmList": {}}
    assert (vdsm.tray(), vdsm.active(), vdsm.entries()) == (
        "debian", ["debian"], (CdEntry(None, vdsm.isos["debian"]),))

    assert vdsm.change_cd(None) == {"vmList": {}}
    assert (vdsm.tray(), vdsm.active()) == ("empty", [])
    assert [len(el) for el in vdsm.cd_elements()] == [0]  # the empty <device name="sdc"/>
    assert _unrelated(vdsm.block()) == unrelated_before
    # Storage went through vdsm's verbs only; vdsm was told to reload after each write.
    assert [c.split()[0] for c in vdsm.storage.calls] == [
        "prepareImage", "prepareImage", "teardownImage", "teardownImage"]
    assert vdsm.reloaded and set(vdsm.reloaded) == {vdsm.vm.value}


def test_a_missing_volume_is_cannot_prepare_image_naming_vdsm_code(vdsm: Vdsm) -> None:
    assert vdsm.change_cd("fedora") == {"vmList": {}}
    vdsm.isos["missing"] = _iso()

    answer = vdsm.change_cd("missing")

    assert answer["code"] == 1630
    assert "VolumeDoesNotExist (201)" in answer["message"]
    assert (vdsm.tray(), vdsm.active(), vdsm.entries()) == (
        "fedora", ["fedora"], (CdEntry(None, vdsm.isos["fedora"]),))


def test_recovery_of_an_interrupted_change_in_vdsm_450_encoding(vdsm: Vdsm) -> None:
    """A change that died after the tray switched: vdsm 4.50's nested <change> remains."""
    assert vdsm.change_cd("fedora") == {"vmList": {}}
    fedora, debian = vdsm.isos["fedora"], vdsm.isos["debian"]
    media = vdsm.loop.prepare(debian)
    VdsmDomainHypervisor(VdsmDomains(vdsm.lookup)).load(vdsm.vm, SDC, media)
    md = vdsm.cdrom.app.core.metadata()
    md.write(vdsm.vm, SDC, (CdEntry(EntryState.EJECTING, fedora),
                            CdEntry(EntryState.LOADING, debian)))
    (element,) = vdsm.cd_elements()
    assert element.find(f"{{{metadata_xml.NS}}}change") is not None

    report = vdsm.cdrom.recover_vm(vdsm.vm.value)

    assert report.clean, report
    assert (vdsm.tray(), vdsm.active(), vdsm.entries()) == (
        "debian", ["debian"], (CdEntry(None, debian),))


def test_an_unknown_vm_is_no_such_vm(vdsm: Vdsm) -> None:
    answer = vdsm.cdrom.changeCD(str(uuid.uuid4()), vdsm.spec("fedora"))

    assert answer["code"] == 1
    assert vdsm.active() == []
    assert vdsm.storage.calls == []


def _unrelated(block: Any) -> list[str]:
    from lxml import etree  # noqa: PLC0415

    return sorted(etree.tostring(el, method="c14n").decode()
                  for el in block if not (isinstance(el.tag, str)
                                          and el.get("name") == "sdc"))


def test_vm_id_parsing_in_recovery_is_typed(vdsm: Vdsm) -> None:
    report = vdsm.cdrom.recover_vm("not-a-uuid")

    assert not report.clean
    assert [e.code for e in report.vm_errors.values()] == [100]
    assert VmId(vdsm.vm.value) not in report.vm_errors


def test_a_vm_vdsm_drops_while_recovery_runs_is_reported_gone(vdsm: Vdsm) -> None:
    """vdsm lists the VM, then the VM is destroyed (its domain object goes away) before
    recovery reads it: nothing is left to recover, and that is no error."""
    assert vdsm.change_cd("fedora") == {"vmList": {}}
    listed = [vdsm.vm.value]
    cdrom = bootstrap_vdsm(lambda vm_id: None, vdsm.storage, vm_ids=lambda: listed,
                           probe=LoopProbe(vdsm.loop))
    report = cdrom.recover_vm(vdsm.vm.value)
    assert report.clean and report.gone == [vdsm.vm] and not report.vm_errors
