"""Hypervisor and MetadataRepository over the libvirt domain objects vdsm already holds.

The libvirt adapters (:mod:`ovirt_cdrom.adapters.libvirt`) do every libvirt call through
``connection.call(fn)``, with ``fn`` asking the connection for a domain by UUID
(``lookupByUUIDString``) or for every running domain (``listAllDomains``). Here the
"connection" is :class:`VdsmDomains`: it answers those two questions from vdsm's own VM
container, through a lookup callable (``vm_id -> domain``). So vdsm's domain object (or
its wrapper, which has virDomain's methods) is used as is, the same XML handling, media
change and metadata codec run, and no second libvirt connection is opened. Reconnecting
is vdsm's business: a call is never retried here.

The metadata is written in vdsm 4.50's encoding by default (a pending change nested in one
``<ovirt-vm:device>`` element), which vdsm's own metadata reader understands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.libvirt import (
    LibvirtConnection,
    LibvirtHypervisor,
    LibvirtMetadataRepository,
)
from ovirt_cdrom.domain.errors import NoSuchVM
from ovirt_cdrom.domain.model import CdEntry, DriveName, VmId

log = logging.getLogger(__name__)

T = TypeVar("T")
DomainLookup = Callable[[str], Any]


class VdsmDomains(LibvirtConnection):
    """vdsm's domains in the shape the libvirt adapters ask for them.

    ``lookup(vm_id)`` returns vdsm's domain object for a VM UUID string; a ``LookupError``
    (e.g. vdsm's ``KeyError`` for an unknown VM) or ``None`` means there is no such VM.
    ``vm_ids()`` lists the VMs vdsm runs (used by ``recover_all``); without it the host
    looks empty and recovery goes VM by VM, as vdsm's VM recovery does.
    """

    def __init__(self, lookup: DomainLookup,
                 vm_ids: Callable[[], Iterable[str]] | None = None) -> None:
        super().__init__(uri="vdsm://domains", opener=self._refuse)
        self._lookup = lookup
        self._vm_ids = vm_ids

    @classmethod
    def single(cls, vm_id: str, domain: Any) -> VdsmDomains:
        """One given domain (e.g. inside a vdsm ``Vm`` object, which holds exactly one)."""
        key = VmId.parse(vm_id).value

        def lookup(wanted: str) -> Any:
            if wanted != key:
                raise KeyError(wanted)
            return domain

        return cls(lookup, lambda: [key])

    # --- what the libvirt adapters call on a connection -------------------------------

    def lookupByUUIDString(self, uuid: str) -> Any:  # noqa: N802
        try:
            domain = self._lookup(uuid)
        except LookupError:
            domain = None
        if domain is None:
            raise NoSuchVM(uuid)
        return domain

    def listAllDomains(self, flags: int = 0) -> list[Any]:  # noqa: N802
        if self._vm_ids is None:
            return []
        domains = []
        for vm_id in self._vm_ids():
            try:
                domains.append(self.lookupByUUIDString(vm_id))
            except NoSuchVM:
                log.debug("VM %s went away while listing", vm_id)
        return domains

    # --- LibvirtConnection -------------------------------------------------------------

    def get(self) -> Any:
        return self

    def call(self, fn: Callable[[Any], T]) -> T:
        return fn(self)

    def close(self) -> None:
        """vdsm owns the connection; nothing to close."""

    @staticmethod
    def _refuse(uri: str) -> Any:
        raise AssertionError(f"the vdsm adapters never open a libvirt connection ({uri})")


class VdsmDomainHypervisor(LibvirtHypervisor):
    """The CD-ROM trays of the domains vdsm holds."""

    def __init__(self, domains: VdsmDomains) -> None:
        super().__init__(domains)


class VdsmDomainMetadataRepository(LibvirtMetadataRepository):
    """The ``ovirt-vm`` block of the domains vdsm holds, vdsm 4.50's encoding by default.

    vdsm keeps its own copy of the block and writes it back whole; ``on_written(vm_id)``
    is called after each of our writes so that vdsm can reload the CD-ROM entry into its
    copy (see docs/embedding-vdsm.md).
    """

    def __init__(self, domains: VdsmDomains,
                 encoding: metadata_xml.Encoding | str = metadata_xml.Encoding.VDSM_450,
                 on_written: Callable[[str], None] | None = None) -> None:
        super().__init__(domains, encoding)
        self.on_written = on_written

    def write(self, vm: VmId, drive: DriveName, entries: Sequence[CdEntry]) -> None:
        super().write(vm, drive, entries)
        if self.on_written is None:
            return
        try:
            self.on_written(vm.value)
        except Exception:  # the write took effect; vdsm's refresh is not ours to fail
            log.exception("vdsm could not reload the metadata of VM %s", vm)
