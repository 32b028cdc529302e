"""A real host for tests: QEMU VMs through libvirt, ISO image files and loop devices.

Everything made here is recorded and removed by :meth:`RealHost.cleanup`, VMs first (they
hold the loop devices), then loop devices, then files, also when a test failed.

The promises are judged from outside, as an administrator would see the host, by the
product's own checker (``domain/promises.py``): what each tray holds from ``virsh
domblklist``, what the metadata says from ``virsh metadata``, which of the test's volumes
are active from the kernel's loop devices, and whether metadata that is not ours changed
from its canonical form (:meth:`RealHost.settle`, then :meth:`RealHost.violations`).
Only the VMs and volumes a test made are looked at: other runs share the libvirtd.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt.hypervisor import cdrom_elements, held_path, parse_domain_xml
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt, to_libvirt
from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.bench.real import domain_type
from ovirt_cdrom.domain import promises
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import DriveKey, DriveName, Tray, VmId, VolumeRef
from ovirt_cdrom.domain.state import DriveState, Unreadable
from rig import unrelated_metadata
from storage.realdev import loops_backed_under

log = logging.getLogger(__name__)

RUN_ID = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
VM_PREFIX = "ovirt-cdrom-test-"
ISO_SIZE = 1024 * 1024
NS = metadata_xml.NS
SDC = DriveName("sdc")
_FOREIGN = "urn:example:zz"


def real_metadata(name: str = "real-vm") -> str:
    """What a VM made by vdsm carries besides our CD-ROM entry (not ours to touch): the
    rig's vdsm values, the empty ``sdc`` entry vdsm writes at VM start, and an element of
    a foreign namespace with its own prefix (libvirt must keep both prefixes)."""
    block = metadata_xml.parse_block(unrelated_metadata(name))
    etree.SubElement(block, f"{{{NS}}}device", devtype="disk", name="sdc")
    foreign = etree.SubElement(block, f"{{{_FOREIGN}}}extension", nsmap={"z": _FOREIGN})
    foreign.set(f"{{{_FOREIGN}}}flag", "yes")
    etree.SubElement(foreign, f"{{{_FOREIGN}}}item").text = "kept"
    etree.SubElement(block, f"{{{NS}}}launchPaused").text = "false"
    return metadata_xml.serialize(block)


UNRELATED_METADATA = real_metadata()


def domain_xml(name: str, vm_uuid: str, cdroms: tuple[str, ...] = ("sdc",),
               metadata: str | None = None, bus: str = "sata") -> str:
    """A small QEMU VM: KVM where QEMU may use it (else TCG), q35, 64 MiB, no boot disk,
    empty CD-ROMs on ``bus``."""
    dom = etree.Element("domain", type=domain_type())
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = vm_uuid
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    etree.SubElement(dom, "vcpu").text = "1"
    if metadata is not None:
        etree.SubElement(dom, "metadata").append(etree.fromstring(metadata))
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="q35").text = "hvm"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    if bus == "scsi":
        etree.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
    for target in cdroms:
        disk = etree.SubElement(devices, "disk", type="file", device="cdrom")
        etree.SubElement(disk, "driver", name="qemu", error_policy="report")
        etree.SubElement(disk, "target", dev=target, bus=bus)
        etree.SubElement(disk, "readonly")
        etree.SubElement(disk, "alias", name=f"ua-{uuid.uuid4()}")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


class RealHost:
    """VMs, image files and loop devices made by one test, removed by :meth:`cleanup`;
    and the promises judged on them from outside (:meth:`violations`)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open(uri)
        # Under /tmp with 0755, so that QEMU (running as its own user) can reach the files.
        self.base = Path(tempfile.mkdtemp(prefix=f"ovirt-cdrom-{RUN_ID}-"))
        self.base.chmod(0o755)
        self.storage_root = self.base / "storage"
        self.run_root = self.base / "host"
        for d in (self.storage_root, self.run_root):
            d.mkdir(mode=0o755)
        self.vms: list[VmId] = []
        self.loops: list[str] = []
        self.volumes: list[VolumeRef] = []
        self.baseline: dict[VmId, str] = {}

    # --- VMs ---------------------------------------------------------------------------

    def create_vm(self, persistent: bool = False, metadata: str | None = None,
                  cdroms: tuple[str, ...] = ("sdc",)) -> VmId:
        vm = VmId(str(uuid.uuid4()))
        self.vms.append(vm)  # recorded first: cleanup copes with a VM that never started
        xml = domain_xml(self._name(vm), vm.value, cdroms, metadata)
        if persistent:
            self.conn.defineXML(xml).create()
        else:
            self.conn.createXML(xml, 0)
        return vm

    def recreate_vm(self, vm: VmId, bus: str = "sata") -> None:
        """Start a transient VM under the UUID of ``vm`` (destroyed before): a VM
        restarted under its id, its CD-ROM ``sdc`` on ``bus``."""
        self.conn.createXML(domain_xml(self._name(vm) + "-again", vm.value, bus=bus), 0)

    @staticmethod
    def _name(vm: VmId) -> str:
        return f"{VM_PREFIX}{RUN_ID}-{vm.value[:8]}"

    def domain(self, vm: VmId) -> libvirt.virDomain:
        return self.conn.lookupByUUIDString(vm.value)

    def is_running(self, vm: VmId) -> bool:
        try:
            return bool(self.domain(vm).isActive())
        except libvirt.libvirtError:
            return False

    def trays(self, vm: VmId) -> dict[DriveName, Tray]:
        """What each CD-ROM holds, from the live XML."""
        root = parse_domain_xml(self.domain(vm).XMLDesc(0))
        return {d: tray_of(held_path(el)) for d, el in cdrom_elements(root).items()}

    def sources(self, vm: VmId) -> dict[DriveName, str | None]:
        """``virsh domblklist --details``: each CD-ROM's source (None for ``-``)."""
        out = subprocess.run(["virsh", "-c", self.uri, "domblklist", "--details", vm.value],
                             check=True, capture_output=True, text=True).stdout
        rows: dict[DriveName, str | None] = {}
        for line in out.splitlines()[2:]:
            fields = line.split(None, 3)
            if len(fields) == 4 and fields[1] == "cdrom":
                rows[DriveName(fields[2])] = None if fields[3].strip() == "-" \
                    else fields[3].strip()
        return rows

    def virsh_metadata(self, vm: VmId) -> str | None:
        """``virsh metadata --uri`` of the ovirt-vm block, as libvirt stores it."""
        proc = subprocess.run(["virsh", "-c", self.uri, "metadata", vm.value, "--uri", NS],
                              check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            assert "metadata not found" in proc.stderr, proc.stderr
            return None
        return proc.stdout

    def block(self, vm: VmId) -> etree._Element:
        """The ovirt-vm block from ``virsh metadata``, our elements in our namespace."""
        return from_libvirt(self.virsh_metadata(vm))

    def state(self, vm: VmId, drive: DriveName = SDC) -> DriveState:
        """What the metadata says of the drive (``virsh metadata``, the product's codec)."""
        try:
            return metadata_xml.read(self.block(vm), drive)
        except CdromError as err:  # the whole document cannot be trusted
            return Unreadable(err.reason)

    def fingerprint(self, vm: VmId) -> str:
        """Canonical XML of the VM's metadata outside its CD-ROM entries."""
        skip = [d.value for d in self.trays(vm)]
        try:
            return metadata_xml.canonical(self.block(vm), skip)
        except CdromError as err:
            return f"unreadable: {err}"

    def destroy_vm(self, vm: VmId) -> None:
        try:
            dom = self.domain(vm)
        except libvirt.libvirtError:
            return
        try:
            persistent = dom.isPersistent()
            if dom.isActive():
                dom.destroy()
            if persistent:
                dom.undefine()
        except libvirt.libvirtError:
            log.exception("cannot remove test VM %s", vm)

    # --- storage -------------------------------------------------------------------------

    def image_file(self, volume: VolumeRef) -> Path:
        """Where the loop activator finds the volume (``<storage_root>/<sd>/<img>/<vol>``)."""
        return self.storage_root / volume.domain_id / volume.image_id / volume.volume_id

    def add_volume(self, volume: VolumeRef) -> Path:
        """The volume's image file under the storage root (a small ISO-sized file)."""
        image = self.image_file(volume)
        image.parent.mkdir(parents=True, exist_ok=True)
        for parent in (image.parent, image.parent.parent):
            parent.chmod(0o755)
        image.write_bytes(f"ISO {volume}".encode().ljust(ISO_SIZE, b"\0"))
        if volume not in self.volumes:
            self.volumes.append(volume)
        return image

    def add_file(self, name: str) -> Path:
        path = self.base / name
        path.write_bytes(f"ISO {name}".encode().ljust(ISO_SIZE, b"\0"))
        return path

    def attach_loop(self, path: Path) -> str:
        device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(path)],
                                check=True, capture_output=True, text=True).stdout.strip()
        self.loops.append(device)
        return device

    def detach_loops(self, devices: list[str]) -> None:
        for device in devices:
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
            if device in self.loops:
                self.loops.remove(device)

    def set_metadata(self, vm: VmId, block: str | None) -> None:
        """Replace the ovirt-vm block as libvirt stores it (None removes it), live+config."""
        dom = self.domain(vm)
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
        if dom.isPersistent():
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        text = None if block is None else to_libvirt(metadata_xml.parse_block(block))
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, text,
                        None if text is None else "ovirt-vm", NS, flags)

    def attached_loops(self) -> dict[str, str]:
        return loops_backed_under(self.base)

    def active(self) -> frozenset[VolumeRef]:
        """The test's volumes whose image file is attached to a loop device (the kernel's
        answer, not the activator's)."""
        attached = set(self.attached_loops().values())
        return frozenset(v for v in self.volumes if str(self.image_file(v)) in attached)

    def is_active(self, volume: VolumeRef) -> bool:
        return volume in self.active()

    # --- the promises, from outside --------------------------------------------------------

    def settle(self, *vms: VmId) -> None:
        """The set-up of ``vms`` is done: remember their metadata that is not ours."""
        for vm in vms:
            self.baseline[vm] = self.fingerprint(vm)

    def observe(self, vms: Iterable[VmId]) -> promises.Observation:
        """The VMs' drives and the test's volumes as the product's checker sees a host.
        Each VM must still be running (a test's precondition, not a promise)."""
        drives: list[promises.ObservedDrive] = []
        changed: list[VmId] = []
        for vm in vms:
            assert self.is_running(vm), f"VM {vm} is not running"
            for drive, source in self.sources(vm).items():
                drives.append(promises.ObservedDrive(DriveKey(vm, drive), tray_of(source),
                                                     self.state(vm, drive),
                                                     source or "nothing"))
            if vm in self.baseline and self.fingerprint(vm) != self.baseline[vm]:
                changed.append(vm)
        return promises.Observation(tuple(drives), frozenset(self.volumes), self.active(),
                                    tuple(changed))

    def violations(self, *vms: VmId, settled: bool = True) -> list[str]:
        """What breaks the promises now on ``vms`` (the product's checker)."""
        return promises.violations(self.observe(vms), settled)

    # --- cleanup -------------------------------------------------------------------------

    def cleanup(self) -> None:
        # Destroying a QEMU VM takes about a second: do them all at once.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self.destroy_vm, self.vms))
        for device in set(self.loops) | set(self.attached_loops()):
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
        try:
            self.conn.close()
        except libvirt.libvirtError:
            log.exception("closing the test connection failed")
        shutil.rmtree(self.base, ignore_errors=True)


def remove_leftover_vms(uri: str) -> None:
    """Remove any VM this run made (a safety net run at the end of the session)."""
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(f"{VM_PREFIX}{RUN_ID}-"):
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
    finally:
        conn.close()


def loop_config(real: RealHost) -> dict[str, str]:
    """The container configuration of the libvirt+loop profile over this host."""
    return {"adapters": "libvirt", "activation": "loop", "libvirt_uri": real.uri,
            "storage_root": str(real.storage_root), "run_root": str(real.run_root)}
