"""vdsm's domains for the libvirt adapters: no connection of ours, no retry.

Inside vdsm the product opens no libvirt connection: it runs the libvirt adapters
(:mod:`ovirt_cdrom.adapters.libvirt`) over the domain objects vdsm already holds, through a
lookup callable (``vm_id -> domain``). :class:`VdsmDomains` is the small ``Domains``
protocol those adapters use, over that lookup. Reconnecting is vdsm's business: a call is
never retried here. What is learnt of a domain (whether it is persistent, its drives'
``<disk>`` elements) is kept while vdsm hands out the same domain object.

The metadata is written in vdsm 4.50's encoding by default (a pending change nested in one
``<ovirt-vm:device>`` element), which vdsm's own metadata reader understands; after each
write vdsm is told (``on_written``), so that its copy of the block is refreshed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt.connection import Handle
from ovirt_cdrom.adapters.libvirt.metadata import LibvirtMetadataRepository
from ovirt_cdrom.domain.errors import NoSuchVM
from ovirt_cdrom.domain.model import DriveName, VmId
from ovirt_cdrom.domain.state import DriveState

log = logging.getLogger(__name__)

T = TypeVar("T")
DomainLookup = Callable[[str], Any]


class VdsmDomains:
    """vdsm's domains by VM.

    ``lookup(vm_id)`` returns vdsm's domain object for a VM UUID string; a ``LookupError``
    (e.g. vdsm's ``KeyError`` for an unknown VM) or ``None`` means there is no such VM.
    ``vm_ids()`` lists the VMs vdsm runs (used by ``recover_all``); without it the host
    looks empty and recovery goes VM by VM, as vdsm's VM recovery does.
    """

    def __init__(self, lookup: DomainLookup,
                 vm_ids: Callable[[], Iterable[str]] | None = None) -> None:
        self._lookup = lookup
        self._vm_ids = vm_ids
        self._lock = threading.Lock()
        self._handles: dict[str, Handle] = {}  # what was learnt, per vdsm domain object

    def run(self, vm: VmId, fn: Callable[[Handle], T]) -> T:
        return fn(self._handle(vm.value))

    def running(self) -> list[VmId]:
        if self._vm_ids is None:
            return []
        return [VmId.parse(vm_id) for vm_id in self._vm_ids()]

    def _handle(self, uuid: str) -> Handle:
        try:
            dom = self._lookup(uuid)
        except LookupError:
            dom = None
        if dom is None:
            with self._lock:
                self._handles.pop(uuid, None)
            raise NoSuchVM(uuid)
        with self._lock:
            handle = self._handles.get(uuid)
            if handle is None or handle.dom is not dom:
                handle = self._handles[uuid] = Handle(dom)
            return handle


class VdsmDomainMetadataRepository(LibvirtMetadataRepository):
    """The ``ovirt-vm`` block of the domains vdsm holds; ``on_written(vm_id)`` runs after
    each write so that vdsm reloads the CD-ROM entries into its copy of the block."""

    def __init__(self, domains: VdsmDomains,
                 encoding: metadata_xml.Encoding | str = metadata_xml.Encoding.VDSM_450,
                 on_written: Callable[[str], None] | None = None) -> None:
        super().__init__(domains, encoding)
        self.on_written = on_written

    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        super().write(vm, drive, state)
        if self.on_written is None:
            return
        try:
            self.on_written(vm.value)
        except Exception:  # the write took effect; vdsm's refresh is not ours to fail
            log.exception("vdsm could not reload the metadata of VM %s", vm)
