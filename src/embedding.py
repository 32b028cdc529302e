"""Embedding into vdsm: one call builds the product over vdsm's own objects.

vdsm calls :func:`bootstrap_vdsm` once at start with its VM lookup and its storage
dispatcher, keeps the returned :class:`VdsmCdrom`, and delegates ``VM.changeCD`` and the
CD-ROM part of its VM recovery to it. See docs/embedding-vdsm.md.

This module lives outside ``ovirt_cdrom.adapters`` because it goes through the container,
which adapters may not import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ovirt_cdrom.adapters.vdsm.domains import DomainLookup, VdsmDomains
from ovirt_cdrom.adapters.vdsm.storage import HostProbe, VdsmStorage
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
from ovirt_cdrom.container import Application, build_vdsm
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.domain.model import VmId
from ovirt_cdrom.service import CdromService, RecoveryReport


@dataclass(frozen=True, slots=True)
class VdsmCdrom:
    """What vdsm keeps: the engine verb and the recovery hooks. Thread-safe."""

    api: VdsmApi
    service: CdromService
    app: Application

    def changeCD(self, vmID: object, cdromspec: object) -> dict[str, Any]:  # noqa: N802, N803
        """``VM.changeCD``: ``{"vmList": {}}`` or vdsm's ``{"code", "message"}``."""
        return self.api.changeCD(vmID, cdromspec)

    def recover_vm(self, vm_id: str) -> RecoveryReport:
        """Clean up one VM's CD-ROM leftovers (vdsm's VM recovery, per VM)."""
        try:
            vm = VmId.parse(vm_id)
        except CdromError as err:
            report = RecoveryReport()
            report.vm_errors[VmId(str(vm_id)[:64])] = err
            return report
        return self.service.recover(vm)

    def recover_all(self) -> RecoveryReport:
        """Clean up every VM vdsm lists (needs ``vm_ids`` at bootstrap)."""
        return self.service.recover_all()


def bootstrap_vdsm(domain_lookup: DomainLookup, storage: VdsmStorage | None, *,
                   vm_ids: Callable[[], Iterable[str]] | None = None,
                   metadata_encoding: str = "vdsm-4.50",
                   probe: HostProbe | None = None,
                   on_metadata_written: Callable[[str], None] | None = None,
                   settings: Mapping[str, Any] | None = None) -> VdsmCdrom:
    """The product inside vdsm, built through the container.

    ``domain_lookup(vm_id)`` returns the libvirt domain object vdsm holds for the VM (a
    ``LookupError`` or ``None``: no such VM); ``storage`` is vdsm's storage dispatcher
    (``prepareImage``/``teardownImage`` answering status dicts; None without storage:
    volume operations then fail typed); ``vm_ids()`` lists
    vdsm's VMs (for ``recover_all``). ``probe`` answers what the dispatcher cannot (is an
    LV active, does a legacy ISO exist), by default from ``/dev`` and the file system.
    ``on_metadata_written(vm_id)`` runs after each metadata write so that vdsm reloads its
    copy of the VM's metadata. ``settings`` are further container settings (e.g. fault
    injection for tests).
    """
    overrides = {**(settings or {}), "metadata_encoding": metadata_encoding}
    app = build_vdsm(VdsmDomains(domain_lookup, vm_ids), storage, probe,
                     on_metadata_written, overrides)
    return VdsmCdrom(app.core.api(), app.core.service(), app)
