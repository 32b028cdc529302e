"""The product's promises, checked on an observed host: one checker for every host.

A host is observed as what each drive's tray holds and what its metadata says, which
volumes the host has and which are active, and which VMs' metadata outside the CD-ROM
entries changed. The in-memory host observes itself (the simulator's report, the tests);
the real-host tests observe a libvirt host from outside (``virsh``, the loop devices).
Each violation is one readable sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovirt_cdrom.domain.model import DriveKey, Tray, VmId, VolumeRef, VolumeTray
from ovirt_cdrom.domain.state import DriveState, Empty, Loaded, Unreadable


@dataclass(frozen=True, slots=True)
class ObservedDrive:
    key: DriveKey
    tray: Tray
    state: DriveState
    tray_text: str = ""  # how to name what the tray holds in a sentence


@dataclass(frozen=True, slots=True)
class Observation:
    drives: tuple[ObservedDrive, ...]
    volumes: frozenset[VolumeRef]         # every volume the host has
    active: frozenset[VolumeRef]          # those active
    unrelated_changed: tuple[VmId, ...] = ()  # metadata outside the CD-ROM entries changed


def violations(host: Observation, settled: bool = True) -> list[str]:
    """What breaks the promises now.

    ``settled``: the host is expected at rest after a recovery (no marker may remain, the
    metadata names what each tray holds, nothing is active that no VM holds). With
    ``settled=False`` only what must hold at every instant is checked: a VM never holds an
    inactive volume, no active volume goes unrecorded (:func:`unrecorded`), and metadata
    that is not ours is unchanged.
    """
    found: list[str] = []
    held: set[VolumeRef] = set()
    by_tray: dict[Tray, VolumeRef] = {
        VolumeTray(v.domain_id, v.image_id, v.volume_id): v for v in host.volumes}
    for drive in host.drives:
        where = f"VM {drive.key.vm} drive {drive.key.drive}"
        volume = by_tray.get(drive.tray)
        if volume is not None:
            held.add(volume)
            if volume not in host.active:
                found.append(f"{where} holds inactive volume {volume}")
        if not settled:
            continue
        state = drive.state
        if isinstance(state, Unreadable):
            found.append(f"{where}: unreadable metadata: {state.reason}")
        elif not isinstance(state, Empty | Loaded):
            found.append(f"{where}: a state marker remains: {state}")
        elif (state.volume if isinstance(state, Loaded) else None) != volume:
            found.append(f"{where} holds {drive.tray_text or _show(drive.tray)} but metadata "
                         f"says {state}")
    if settled:
        found += [f"volume {v} is active but no VM holds it"
                  for v in sorted(host.active - held, key=str)]
    else:
        found += unrecorded(host)
    found += [f"VM {vm}: metadata outside the CD-ROM entries changed"
              for vm in host.unrelated_changed]
    return found


def unrecorded(host: Observation) -> list[str]:
    """Active volumes that no tray holds and no drive's metadata names: leaked for good.

    A promise at every instant, crashes included ("nothing leaks"): recovery can clean up
    only what a tray or the metadata records, and the flows' order (mark, prepare, switch,
    tear down, then unmark: D2) keeps this empty. Part of :func:`violations` at every
    instant (``settled=False``); at rest, "active but no VM holds it" says more.
    """
    by_tray: dict[Tray, VolumeRef] = {
        VolumeTray(v.domain_id, v.image_id, v.volume_id): v for v in host.volumes}
    recorded: set[VolumeRef] = set()
    for drive in host.drives:
        recorded.update(drive.state.volumes)
        held = by_tray.get(drive.tray)
        if held is not None:
            recorded.add(held)
    return [f"volume {v} is active, held by no VM and named by no metadata"
            for v in sorted(host.active - recorded, key=str)]


def _show(tray: Tray) -> str:
    return str(tray)
