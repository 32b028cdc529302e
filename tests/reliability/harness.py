"""The reliability tests' host on the one rig (``tests/rig.py``), and the figures they print.

:func:`build_rig` sets up a :class:`~rig.Rig` with several VMs whose metadata holds much
that is not ours (the rig's ``unrelated_metadata``), CD-ROM drives spread over them, ISO
volumes they share and legacy ISO files. Volumes and files are numbered: ``vol(n)`` and
``iso(n)`` for ``n`` past what the host was given are a volume storage lacks and a file
that does not exist. A test names what a drive should get as a target: ``("volume", n)``,
``("eject",)``, ``("path", n)`` or ``("path-eject",)`` (the legacy route's eject).

The faults are the product's (``adapters/faults.py``, armed through ``rig.plan``); the
promises are the product's checker (``rig.violations``, ``promises.unrecorded``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovirt_cdrom.adapters.faults import At, FaultPlan
from ovirt_cdrom.adapters.memory.invariants import fingerprints
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.domain import promises
from ovirt_cdrom.domain.model import (
    EMPTY_TRAY,
    DriveKey,
    DriveName,
    FileTray,
    Tray,
    VmId,
    VolumeRef,
    VolumeTray,
)
from rig import Rig, legacy_path, vm_id, volume

FIGURES_FILE = Path("/tmp/ovirt-cdrom-reliability-figures.json")

# What the closing note of issue 5 reports; every test adds to it.
FIGURES: Counter[str] = Counter()

Target = tuple[Any, ...]  # ("volume", n), ("eject",), ("path", n), ("path-eject",)
Layout = tuple[tuple[tuple[str, int], ...], ...]  # per VM, its drives' (iface, index)

# Which drives each VM has.
LAYOUT: Layout = (
    (("sata", 2),),
    (("sata", 2), ("ide", 3)),
    (("scsi", 2),),
    (),
)


def write_figures() -> None:
    FIGURES_FILE.write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


def vol(n: int) -> VolumeRef:
    """ISO volume number ``n`` (the host has those below its ``n_volumes``)."""
    return volume(("reliability", n))


def iso(n: int) -> str:
    """Legacy ISO file number ``n`` (it exists below the host's ``n_files``)."""
    return legacy_path(f"legacy-{n}")


def tray_of(v: VolumeRef) -> VolumeTray:
    return VolumeTray(v.domain_id, v.image_id, v.volume_id)


@dataclass(frozen=True)
class Drive:
    """A CD-ROM drive of the layout, as the engine addresses it and as the host names it."""

    vm: VmId
    name: DriveName
    iface: str
    index: int

    @property
    def key(self) -> DriveKey:
        return DriveKey(self.vm, self.name)


def drives_of(layout: Layout) -> list[Drive]:
    """The layout's drives, in order: VM ``n`` is ``vm_id(("reliability", n))``."""
    return [Drive(vm_id(("reliability", n)), DriveName.from_iface_index(iface, index), iface,
                  index)
            for n, buses in enumerate(layout) for iface, index in buses]


def build_rig(*, n_volumes: int = 3, n_files: int = 2, layout: Layout = LAYOUT,
              encoding: Encoding = Encoding.DESIGN,
              loaded: Mapping[int, int] | None = None) -> tuple[Rig, list[Drive]]:
    """A host with the ``layout``'s VMs and drives, ``n_volumes`` ISO volumes (inactive)
    and ``n_files`` legacy files; ``loaded``: drive number -> volume number whose CD the
    drive holds at start (the volume active, the metadata naming it). Settled."""
    rig = Rig(encoding=encoding)
    rig.host.files = {iso(n) for n in range(n_files)}
    for n in range(n_volumes):
        rig.add_volume(vol(n))
    for n, buses in enumerate(layout):
        rig.add_vm(vm_id(("reliability", n)), drives=buses)
    drives = drives_of(layout)
    for d, n in (loaded or {}).items():
        rig.hold(drives[d].vm, vol(n), drives[d].name)
    rig.settle()
    return rig, drives


def spec(drive: Drive, target: Target) -> dict[str, Any]:
    """vdsm's cdromspec asking ``drive`` for ``target``."""
    base: dict[str, Any] = {"iface": drive.iface, "index": str(drive.index)}
    kind = target[0]
    if kind == "volume":
        base["drive_spec"] = {"device": "cdrom", **vol(target[1]).as_dict()}
    elif kind == "eject":
        base["drive_spec"] = None
    elif kind == "path":
        base["path"] = iso(target[1])
    else:
        base["path"] = ""
    return base


def expected_tray(target: Target) -> Tray:
    """What the tray holds once ``target`` is reached."""
    kind = target[0]
    if kind == "volume":
        return tray_of(vol(target[1]))
    if kind == "path":
        return FileTray(iso(target[1]))
    return EMPTY_TRAY


def tray(rig: Rig, drive: Drive) -> Tray:
    return rig.tray(drive.vm, drive.name)


def trays(rig: Rig, drives: list[Drive]) -> dict[DriveKey, Tray]:
    return {d.key: tray(rig, d) for d in drives}


def broken(rig: Rig, settled: bool = True) -> list[str]:
    """Every promise the host breaks now: the product's checker, and no active volume
    that nothing records (a promise at every instant)."""
    return rig.violations(settled) + promises.unrecorded(rig.observe())


def meaning(rig: Rig) -> tuple[promises.Observation, dict[VmId, str]]:
    """The host in meaning: trays, states, volumes, and the metadata that is not ours."""
    return rig.observe(), fingerprints(rig.host)


def snapshot(rig: Rig) -> dict[str, Any]:
    """Everything a call could change on the host, exactly (the metadata as text)."""
    with rig.host.lock:
        return {
            "trays": {vm.id: {name: (d.source, d.disk_type) for name, d in vm.drives.items()}
                      for vm in rig.host.vms.values()},
            "metadata": {vm.id: vm.metadata.xml() for vm in rig.host.vms.values()},
            "volumes": dict(rig.host.volumes),
        }


def points(plan: FaultPlan) -> list[At]:
    """The calls of the plan's step, in the order they began, each by name and occurrence:
    where to inject, from a run's own trace."""
    return [At(t.call, t.occurrence) for t in sorted(plan.trace, key=lambda t: t.number)]

