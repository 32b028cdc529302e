"""The Hypervisor port over libvirt: CD-ROM trays read from the live domain XML.

A media change is ``updateDeviceFlags`` with a ``<disk>`` element holding the new
``<source>``: ``type="block"`` with ``<source dev>`` for a block volume, ``type="file"`` with
``<source file>`` for a file (QEMU refuses a block device given as a file). Loads are
forced, as vdsm does; an eject is tried without force first (a guest may hold the tray
locked) and forced only if that fails.

Which ``<disk>``: libvirt changes only the medium of a live drive and keeps the rest of it
(driver, alias, address, boot order), so for a live-only change (a transient domain, as
vdsm's are) the element is minimal, as vdsm sends it: the source, a raw driver type and
the target's ``dev`` and ``bus``. A change that also goes to a persistent domain's
configuration replaces the drive's whole definition there, so it gets the drive's own
element copied from the live XML, with the medium swapped.

The drives' elements come from the domain XML that reading the trays (``cdrom``,
``cdroms``) fetched last through the VM's kept handle (remembered in the handle's memo): a
flow reads the tray before it changes it, so a change costs no second ``XMLDesc``. Only
the target's bus and the drive's own settings are taken from it, which do not change while
a domain runs. If libvirt refuses a change built from a remembered element (the domain was
re-created under its UUID with another drive), the connection's one retry policy runs the
change once more, knowing nothing (``connection.py``).

What a tray holds is read off ``<source>`` (``dev``, ``file``) and told apart with vdsm's
paths (``adapters/vdsm_layout.py``): a storage domain's volume, or a file.

The migration check is one ``jobStats`` call: libvirt reports an outgoing migration as the
domain's job (``operation``), and the migration job spans the states in which a domain is
paused for migration. It refuses job statistics on the receiving side of a migration
(``VIR_ERR_OPERATION_UNSUPPORTED``, "migration statistics are available only on the source
host"), and a driver may not support them at all: only then is the domain's state asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from lxml import etree
from ovirt_cdrom.adapters.libvirt.connection import Domains, Handle, error_code, map_error
from ovirt_cdrom.adapters.safe_xml import hardened_parser
from ovirt_cdrom.adapters.vdsm_layout import tray_of
from ovirt_cdrom.domain.errors import (
    CdromError,
    HypervisorError,
    InvalidParameter,
    NoSuchDrive,
    NoSuchVM,
)
from ovirt_cdrom.domain.model import DiskType, DriveName, Media, Tray, VmId
from ovirt_cdrom.ports import Hypervisor

log = logging.getLogger(__name__)

T = TypeVar("T")
_MIGRATION_OPERATIONS = frozenset({
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN,
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
})
# (state, reason) pairs of a domain in the middle of a migration, on either side.
_MIGRATION_STATES = frozenset(
    (state, getattr(libvirt, reason))
    for state, reason in (
        (libvirt.VIR_DOMAIN_PAUSED, "VIR_DOMAIN_PAUSED_MIGRATION"),
        (libvirt.VIR_DOMAIN_PAUSED, "VIR_DOMAIN_PAUSED_POSTCOPY"),
        (libvirt.VIR_DOMAIN_PAUSED, "VIR_DOMAIN_PAUSED_POSTCOPY_FAILED"),
        (libvirt.VIR_DOMAIN_RUNNING, "VIR_DOMAIN_RUNNING_POSTCOPY"),
        (libvirt.VIR_DOMAIN_RUNNING, "VIR_DOMAIN_RUNNING_POSTCOPY_FAILED"),
    )
    if hasattr(libvirt, reason)
)
# jobStats refused: an incoming migration (qemu) or no job statistics in this driver.
_JOB_STATS_REFUSED = frozenset({libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                                libvirt.VIR_ERR_NO_SUPPORT})
_DISKS = "cdrom disks"  # memo key: the CD-ROM <disk> elements of the last XMLDesc
# Elements of the live XML that describe the current medium, not the drive.
_MEDIUM_ELEMENTS = ("source", "backingStore", "mirror")


def parse_domain_xml(text: str) -> etree._Element:
    """Parse libvirt's domain XML with a hardened parser (no entities, DTD or network)."""
    try:
        return etree.fromstring(text.encode(), hardened_parser())
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


def minimal_disk_xml(disk: etree._Element, media: Media | None) -> str:
    """The least ``<disk>`` that moves the drive ``disk`` to ``media`` (None: empty) live.

    The source, a raw format for media (never let the format be probed) and the target's
    ``dev`` and ``bus``: libvirt keeps everything else of the live drive.
    """
    target = disk.find("target")
    if target is None or target.get("dev") is None:
        raise HypervisorError("a CD-ROM <disk> without a target dev")
    kind = "block" if media is not None and media.disk_type is DiskType.BLOCK else "file"
    new = etree.Element("disk", {"type": kind, "device": disk.get("device", "cdrom")})
    if media is not None:
        etree.SubElement(new, "driver", {"type": "raw"})
        etree.SubElement(new, "source", {"dev" if kind == "block" else "file": media.path})
    target_attrs = {"dev": target.get("dev", "")}
    if target.get("bus") is not None:
        target_attrs["bus"] = target.get("bus", "")
    etree.SubElement(new, "target", target_attrs)
    return etree.tostring(new, encoding="unicode")


def _source_position(disk: etree._Element) -> int:
    driver = disk.find("driver")
    return disk.index(driver) + 1 if driver is not None else 0


def job_is_migration(job_stats: Mapping[str, Any]) -> bool:
    """Whether a domain with these job statistics (``jobStats()``) is migrating."""
    if job_stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return False
    operation = job_stats.get("operation")
    # Without the operation (very old libvirt) an active job may be a migration: refuse.
    return operation is None or operation in _MIGRATION_OPERATIONS


def state_is_migration(state: Sequence[int]) -> bool:
    """Whether a domain in this ``(state, reason)`` (``state()``) is migrating."""
    return (state[0], state[1]) in _MIGRATION_STATES


def domain_is_migrating(dom: Any) -> bool:
    """Whether the domain ``dom`` is migrating: its job, or its state where libvirt gives
    no job statistics (the receiving side of a migration, a driver without them)."""
    try:
        return job_is_migration(dom.jobStats())
    except libvirt.libvirtError as err:
        code = error_code(err)
        if code not in _JOB_STATS_REFUSED:
            raise
        if state_is_migration(dom.state()):
            return True
        if code == libvirt.VIR_ERR_OPERATION_UNSUPPORTED:
            raise  # refused, and the state does not say why: do not guess
        log.debug("No job statistics (%s); the domain's state shows no migration", err)
        return False


class LibvirtHypervisor(Hypervisor):
    """The VMs' CD-ROM trays, over the domains of a :class:`Domains` (ours or vdsm's)."""

    def __init__(self, domains: Domains) -> None:
        self.domains = domains

    # --- reading ---------------------------------------------------------------------

    def vm_ids(self) -> list[VmId]:
        try:
            return self.domains.running()
        except libvirt.libvirtError as err:
            raise map_error(err, "list domains") from err

    def is_migrating(self, vm: VmId) -> bool:
        return self._on(vm, "read job", lambda h: domain_is_migrating(h.dom))

    def cdroms(self, vm: VmId) -> Mapping[DriveName, Tray]:
        disks = self._on(vm, "read domain XML", _read_disks)
        return {name: tray_of(held_path(disk)) for name, disk in sorted(disks.items())}

    def cdrom(self, vm: VmId, drive: DriveName) -> Tray:
        disk = self._on(vm, "read domain XML", _read_disks).get(drive)
        if disk is None:
            raise NoSuchDrive(vm, drive)
        return tray_of(held_path(disk))

    # --- changing --------------------------------------------------------------------

    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        log.info("Loading %s into %s/%s", media.path, vm, drive)
        self._change(vm, drive, media, libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE,
                     what=f"load {media.path} into {drive}")

    def eject(self, vm: VmId, drive: DriveName) -> None:
        log.info("Ejecting %s/%s", vm, drive)
        try:
            self._change(vm, drive, None, 0, what=f"eject {drive}")
        except (NoSuchVM, NoSuchDrive):
            raise
        except CdromError as err:
            # A guest may hold the tray locked: vdsm forces the eject then.
            log.warning("Eject of %s/%s refused (%s); forcing it", vm, drive, err)
            self._change(vm, drive, None, libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE,
                         what=f"force eject {drive}")

    # --- internals -------------------------------------------------------------------

    def _change(self, vm: VmId, drive: DriveName, media: Media | None, force: int,
                what: str) -> None:
        """Put ``media`` (None: nothing) in the drive, live and, if persistent, in config.

        The drive's ``<disk>`` is the one the last tray read remembered (a flow reads the
        tray before it changes it), so a change costs no second ``XMLDesc``; if it is stale
        libvirt refuses the change and the retry policy runs this again, fresh.
        """
        def change(handle: Handle) -> None:
            disks = handle.memo.get(_DISKS)
            if disks is None or drive not in disks:
                disks = _read_disks(handle)
            disk = disks.get(drive)
            if disk is None:
                raise NoSuchDrive(vm, drive)
            persistent = handle.persistent()
            # The configuration takes the element whole: give it the drive's own.
            xml = media_disk_xml(disk, media) if persistent else minimal_disk_xml(disk, media)
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | force
            if persistent:
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            handle.dom.updateDeviceFlags(xml, int(flags))
        self._on(vm, what, change)

    def _on(self, vm: VmId, what: str, fn: Callable[[Handle], T]) -> T:
        """``fn`` on the VM's domain, libvirt errors mapped."""
        try:
            return self.domains.run(vm, fn)
        except libvirt.libvirtError as err:
            log.debug("libvirt %s failed (code %s): %s", what, error_code(err), err)
            raise map_error(err, what, HypervisorError, vm) from err


def _read_disks(handle: Handle) -> dict[DriveName, etree._Element]:
    """The CD-ROM elements of the domain XML, remembered with the domain's handle."""
    disks = cdrom_elements(parse_domain_xml(str(handle.dom.XMLDesc(0))))
    handle.memo[_DISKS] = disks
    return disks
