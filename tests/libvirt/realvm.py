"""A real host for tests: QEMU VMs through libvirt, ISO image files and loop devices.

Everything made here is recorded and removed by :meth:`RealHost.cleanup`, VMs first (they
hold the loop devices), then loop devices, then files, also when a test failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt.hypervisor import cdrom_elements, held_path, parse_domain_xml
from ovirt_cdrom.adapters.libvirt.metadata import from_libvirt, to_libvirt
from ovirt_cdrom.bench.real import domain_type
from ovirt_cdrom.domain.model import DriveName, Unreadable, VmId, VolumeRef

log = logging.getLogger(__name__)

RUN_ID = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
VM_PREFIX = "ovirt-cdrom-test-"
ISO_SIZE = 1024 * 1024
NS = "http://ovirt.org/vm/1.0"

# What a VM made by vdsm carries besides our CD-ROM entry (not ours to touch).
UNRELATED_METADATA = f"""<ovirt-vm:vm xmlns:ovirt-vm="{NS}" xmlns:z="urn:example:zz">
  <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
  <ovirt-vm:destroy_on_reboot type="bool">False</ovirt-vm:destroy_on_reboot>
  <ovirt-vm:memGuaranteedSize type="int">64</ovirt-vm:memGuaranteedSize>
  <ovirt-vm:custom><ovirt-vm:vhost type="float">1.5</ovirt-vm:vhost></ovirt-vm:custom>
  <ovirt-vm:device mac_address="56:6f:00:00:00:01">
    <ovirt-vm:network>ovirtmgmt</ovirt-vm:network>
  </ovirt-vm:device>
  <ovirt-vm:device devtype="disk" name="sda">
    <ovirt-vm:domainID>88252cf6-381e-48f0-8795-a294a32c7149</ovirt-vm:domainID>
    <ovirt-vm:volumeChain><ovirt-vm:volumeChainNode>
      <ovirt-vm:leaseOffset type="int">105906176</ovirt-vm:leaseOffset>
      <ovirt-vm:path>/rhev/data-center/mnt/blockSD/x/images/y/z</ovirt-vm:path>
    </ovirt-vm:volumeChainNode></ovirt-vm:volumeChain>
  </ovirt-vm:device>
  <ovirt-vm:device devtype="disk" name="sdc"/>
  <z:extension z:flag="yes"><z:item>kept</z:item></z:extension>
  <ovirt-vm:launchPaused>false</ovirt-vm:launchPaused>
</ovirt-vm:vm>"""


def domain_xml(name: str, vm_uuid: str, cdroms: tuple[str, ...] = ("sdc",),
               metadata: str | None = None) -> str:
    """A small QEMU VM: KVM where QEMU may use it (else TCG), q35, 64 MiB, no boot disk,
    empty SATA CD-ROMs."""
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
    for target in cdroms:
        disk = etree.SubElement(devices, "disk", type="file", device="cdrom")
        etree.SubElement(disk, "driver", name="qemu", error_policy="report")
        etree.SubElement(disk, "target", dev=target, bus="sata")
        etree.SubElement(disk, "readonly")
        etree.SubElement(disk, "alias", name=f"ua-{uuid.uuid4()}")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


def loops_backed_under(base: Path) -> dict[str, str]:
    """Loop devices whose backing file lies under ``base``: device -> backing file."""
    found = {}
    prefix = str(base.resolve()) + "/"
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = backing.read_text().strip()
        except OSError:
            continue
        if path.startswith(prefix):
            found["/dev/" + backing.parent.parent.name] = path
    return found


def device_of(path: str | None) -> str | None:
    """The /dev/loopN a tray path leads to (links resolved), None when it is not one."""
    if path is None:
        return None
    real = os.path.realpath(path)
    return real if real.startswith("/dev/loop") else None


class RealHost:
    """VMs, image files and loop devices made by one test, removed by :meth:`cleanup`."""

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

    # --- VMs ---------------------------------------------------------------------------

    def create_vm(self, persistent: bool = False, metadata: str | None = None,
                  cdroms: tuple[str, ...] = ("sdc",)) -> VmId:
        vm_uuid = str(uuid.uuid4())
        name = f"{VM_PREFIX}{RUN_ID}-{vm_uuid[:8]}"
        xml = domain_xml(name, vm_uuid, cdroms, metadata)
        vm = VmId(vm_uuid)
        self.vms.append(vm)  # recorded first: cleanup copes with a VM that never started
        if persistent:
            self.conn.defineXML(xml).create()
        else:
            self.conn.createXML(xml, 0)
        return vm

    def domain(self, vm: VmId) -> libvirt.virDomain:
        return self.conn.lookupByUUIDString(vm.value)

    def is_running(self, vm: VmId) -> bool:
        try:
            return bool(self.domain(vm).isActive())
        except libvirt.libvirtError:
            return False

    def trays(self, vm: VmId) -> dict[DriveName, str | None]:
        """What each CD-ROM holds, from the live XML."""
        root = parse_domain_xml(self.domain(vm).XMLDesc(0))
        return {d: held_path(el) for d, el in cdrom_elements(root).items()}

    def domblklist(self, vm: VmId) -> dict[str, str | None]:
        """``virsh domblklist``: target -> source (None for ``-``)."""
        out = subprocess.run(["virsh", "-c", self.uri, "domblklist", vm.value],
                             check=True, capture_output=True, text=True).stdout
        rows: dict[str, str | None] = {}
        for line in out.splitlines()[2:]:
            fields = line.split(None, 1)
            if len(fields) == 2:
                rows[fields[0]] = None if fields[1].strip() == "-" else fields[1].strip()
        return rows

    def virsh_metadata(self, vm: VmId) -> etree._Element | None:
        """``virsh metadata --uri`` of the ovirt-vm block, as libvirt stores it."""
        proc = subprocess.run(["virsh", "-c", self.uri, "metadata", vm.value, "--uri", NS],
                              check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            assert "metadata not found" in proc.stderr, proc.stderr
            return None
        return etree.fromstring(proc.stdout.encode(),
                                etree.XMLParser(resolve_entities=False, no_network=True))

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

    def add_volume(self, volume: VolumeRef) -> Path:
        """The volume's image file under the storage root (a small ISO-sized file)."""
        image = self.storage_root / volume.domain_id / volume.image_id / volume.volume_id
        image.parent.mkdir(parents=True, exist_ok=True)
        for parent in (image.parent, image.parent.parent):
            parent.chmod(0o755)
        image.write_bytes(f"ISO {volume}".encode().ljust(ISO_SIZE, b"\0"))
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


def promise_violations(real: RealHost, vms: list[VmId], drive: str = "sdc") -> list[str]:
    """What breaks the promises now, seen from outside: ``virsh domblklist``, ``virsh
    metadata`` and the kernel's loop devices. Empty when all hold."""
    from ovirt_cdrom.domain.model import EMPTY_ENTRY  # noqa: PLC0415

    found: list[str] = []
    held: set[str] = set()
    name = DriveName(drive)
    for vm in vms:
        if not real.is_running(vm):
            found.append(f"VM {vm} is not running")
            continue
        tray = real.domblklist(vm).get(drive)
        stored = real.virsh_metadata(vm)
        block = from_libvirt(None if stored is None else etree.tostring(stored).decode())
        entries = metadata_xml.read_entries(block, name)
        device = device_of(tray)
        if isinstance(entries, Unreadable):
            found.append(f"VM {vm}: unreadable metadata: {entries}")
            continue
        if device is not None:
            held.add(device)
        if any(e.state is not None for e in entries):
            found.append(f"VM {vm}: a state marker remains: {entries}")
        elif tray is None:
            if entries not in ((EMPTY_ENTRY,), ()):
                found.append(f"VM {vm} tray is empty but metadata says {entries}")
        elif len(entries) != 1 or entries[0].volume is None or not entries[0].volume.is_at(tray):
            found.append(f"VM {vm} holds {tray} but metadata says {entries}")
    for device, backing in real.attached_loops().items():
        if device not in held:
            found.append(f"loop device {device} ({backing}) is attached but no VM holds it")
    return found
