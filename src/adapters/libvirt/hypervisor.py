"""The Hypervisor port over libvirt: CD-ROM trays read from the live domain XML.

A media change is ``updateDeviceFlags`` with the drive's own ``<disk>`` element (copied from
the live XML, so target, bus, driver, alias, address and boot order stay as libvirt knows
them) and a new ``<source>``: ``type="block"`` with ``<source dev>`` for a block volume,
``type="file"`` with ``<source file>`` for a file (QEMU refuses a block device given as a
file). Loads are forced, as vdsm does; an eject is tried without force first (a guest may
hold the tray locked) and forced only if that fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from copy import deepcopy
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from lxml import etree
from ovirt_cdrom.adapters.libvirt.connection import LibvirtConnection, error_code, map_error
from ovirt_cdrom.domain.errors import (
    CdromError,
    HypervisorError,
    InvalidParameter,
    NoSuchDrive,
    NoSuchVM,
)
from ovirt_cdrom.domain.model import DiskType, DriveName, Media, VmId
from ovirt_cdrom.ports import Hypervisor

log = logging.getLogger(__name__)

T = TypeVar("T")
_MIGRATION_OPERATIONS = frozenset({
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN,
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
})
_MIGRATION_PAUSES = frozenset({libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
                               libvirt.VIR_DOMAIN_PAUSED_POSTCOPY})
# Elements of the live XML that describe the current medium, not the drive.
_MEDIUM_ELEMENTS = ("source", "backingStore", "mirror")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False)


def parse_domain_xml(text: str) -> etree._Element:
    """Parse libvirt's domain XML with a hardened parser (no entities, DTD or network)."""
    try:
        return etree.fromstring(text.encode(), _parser())
    except etree.XMLSyntaxError as err:
        raise HypervisorError(f"unreadable domain XML: {err}") from None


def cdrom_elements(domain_xml: etree._Element) -> dict[DriveName, etree._Element]:
    """The CD-ROM ``<disk>`` elements of a domain by target name."""
    found: dict[DriveName, etree._Element] = {}
    for disk in domain_xml.iterfind("devices/disk[@device='cdrom']"):
        target = disk.find("target")
        name = target.get("dev") if target is not None else None
        try:
            drive = DriveName.parse(name)
        except InvalidParameter:
            log.warning("Ignoring a CD-ROM with an unexpected target %r", name)
            continue
        found[drive] = disk
    return found


def held_path(disk: etree._Element) -> str | None:
    """What the tray holds: the source's ``dev`` or ``file``, None for an empty tray."""
    source = disk.find("source")
    if source is None:
        return None
    kind = disk.get("type", "file")
    if kind == "network":
        name = source.get("name")
        return f"{source.get('protocol', 'network')}:{name}" if name else None
    return source.get("dev") or source.get("file") or source.get("volume") or None


def media_disk_xml(disk: etree._Element, media: Media | None) -> str:
    """The drive's ``<disk>`` holding ``media`` (None: an empty tray)."""
    new = deepcopy(disk)
    new.tail = None
    for tag in _MEDIUM_ELEMENTS:
        for el in new.findall(tag):
            new.remove(el)
    source_at = _source_position(new)
    if media is None:
        new.set("type", "file")
    elif media.disk_type is DiskType.BLOCK:
        new.set("type", "block")
        new.insert(source_at, etree.Element("source", {"dev": media.path}))
    else:
        new.set("type", "file")
        new.insert(source_at, etree.Element("source", {"file": media.path}))
    driver = new.find("driver")
    if media is not None and driver is not None and driver.get("type") is None:
        driver.set("type", "raw")  # an ISO is raw; never let the format be probed
    return etree.tostring(new, encoding="unicode")


def _source_position(disk: etree._Element) -> int:
    driver = disk.find("driver")
    return disk.index(driver) + 1 if driver is not None else 0


def is_migrating(job_stats: Mapping[str, Any], state: tuple[int, int]) -> bool:
    """Whether a domain with these job statistics and ``(state, reason)`` is migrating."""
    status, reason = state
    if status == libvirt.VIR_DOMAIN_PAUSED and reason in _MIGRATION_PAUSES:
        return True
    if job_stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return False
    operation = job_stats.get("operation")
    # Without the operation (very old libvirt) an active job may be a migration: refuse.
    return operation is None or operation in _MIGRATION_OPERATIONS


class LibvirtHypervisor(Hypervisor):
    """The VMs libvirt runs on this host, over one shared connection."""

    def __init__(self, connection: LibvirtConnection) -> None:
        self.connection = connection

    # --- reading ---------------------------------------------------------------------

    def vm_ids(self) -> list[VmId]:
        def run(conn: Any) -> list[VmId]:
            domains = [(dom.UUIDString(), dom)
                       for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
            self.connection.remember(conn, domains)  # recovery then asks each VM by UUID
            return [VmId.parse(uuid) for uuid, _dom in domains]
        return self._call("list domains", None, lambda: self.connection.call(run))

    def is_migrating(self, vm: VmId) -> bool:
        def run(dom: Any) -> bool:
            state = dom.state()
            return is_migrating(dom.jobStats(), (state[0], state[1]))
        return self._on(vm, "read job", run)

    def cdroms(self, vm: VmId) -> Mapping[DriveName, str | None]:
        disks = self._cdrom_elements(vm)
        return {name: held_path(disk) for name, disk in sorted(disks.items())}

    def cdrom(self, vm: VmId, drive: DriveName) -> str | None:
        return held_path(self._cdrom_element(vm, drive))

    # --- changing --------------------------------------------------------------------

    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        disk = self._cdrom_element(vm, drive)
        xml = media_disk_xml(disk, media)
        flags = self._flags(vm) | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
        log.info("Loading %s into %s/%s", media.path, vm, drive)
        self._update(vm, xml, flags, what=f"load {media.path} into {drive}")

    def eject(self, vm: VmId, drive: DriveName) -> None:
        disk = self._cdrom_element(vm, drive)
        xml = media_disk_xml(disk, None)
        flags = self._flags(vm)
        log.info("Ejecting %s/%s", vm, drive)
        try:
            self._update(vm, xml, flags, what=f"eject {drive}")
        except NoSuchVM:
            raise
        except CdromError as err:
            log.warning("Eject of %s/%s refused (%s); forcing it", vm, drive, err)
            self._update(vm, xml, flags | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE,
                         what=f"force eject {drive}")

    # --- internals -------------------------------------------------------------------

    def _flags(self, vm: VmId) -> int:
        """Where a device change goes: the live domain and, if persistent, its config."""
        persistent = self._on(vm, "read persistence", lambda dom: bool(dom.isPersistent()))
        return int(libvirt.VIR_DOMAIN_AFFECT_LIVE | (libvirt.VIR_DOMAIN_AFFECT_CONFIG
                                                     if persistent else 0))

    def _update(self, vm: VmId, xml: str, flags: int, what: str) -> None:
        self._on(vm, what, lambda dom: dom.updateDeviceFlags(xml, flags))

    def _cdrom_elements(self, vm: VmId) -> dict[DriveName, etree._Element]:
        text = self._on(vm, "read domain XML", lambda dom: str(dom.XMLDesc(0)))
        return cdrom_elements(parse_domain_xml(text))

    def _cdrom_element(self, vm: VmId, drive: DriveName) -> etree._Element:
        disk = self._cdrom_elements(vm).get(drive)
        if disk is None:
            raise NoSuchDrive(vm, drive)
        return disk

    def _on(self, vm: VmId, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(domain)`` on the VM's domain, libvirt errors mapped."""
        return self._call(what, vm, lambda: self.connection.call_domain(vm.value, fn))

    def _call(self, what: str, vm: VmId | None, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except libvirt.libvirtError as err:
            mapped = map_error(err, what, HypervisorError, vm)
            log.debug("libvirt %s failed (code %s): %s", what, error_code(err), err)
            raise mapped from err
