"""Benchmarks on the in-memory host: flow rates, round trips per flow, recovery time.

Everything runs through the real core (container, service, flows) over the in-memory
adapters, on one thread. Each benchmark checks what it measured did what it claims (every
flow succeeded, recovery ended clean and changed exactly the drives that had leftovers),
so that a broken core cannot produce a fast figure.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import (
    CdTarget,
    DriveName,
    Eject,
    LoadVolume,
    VmId,
    VolumeRef,
)
from ovirt_cdrom.domain.state import Changing, DriveState, Ejecting, Inserting, Loaded
from ovirt_cdrom.service import CdromService, RecoveryReport

FLOWS = ("insert", "eject", "change")
# Port calls that only look (no effect on the host).
READ_CALLS = frozenset({
    "hypervisor.vm_ids", "hypervisor.is_migrating", "hypervisor.cdroms", "hypervisor.cdrom",
    "metadata.read", "metadata.read_all", "volumes.is_active",
})
MEDIA_CALLS = frozenset({"hypervisor.load", "hypervisor.eject"})
_POOL = "5e3a7c1d-0000-4000-8000-000000000001"
_DOMAIN = "5e3a7c1d-0000-4000-8000-000000000002"
_IFACE, _INDEX = "sata", 2


def _uuid(kind: int, n: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{n:012x}"


def vm_id(n: int) -> VmId:
    return VmId(_uuid(1, n))


def iso(n: int, which: int) -> VolumeRef:
    """The ``which``-th (0 or 1) ISO volume of VM ``n``: every VM has its own two."""
    return VolumeRef(_POOL, _DOMAIN, _uuid(2 + which, n), _uuid(4 + which, n))


@dataclass(frozen=True, slots=True)
class Rates:
    """Flows per second of several timed batches: the median and the spread."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return _median(self.samples)


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _timed(run: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class _FlowHost:
    """``vms`` VMs with one CD-ROM each and two ISO volumes of their own."""

    def __init__(self, vms: int, faults: bool = False) -> None:
        self.app = build({"adapters": "memory", "fault_injection": "on" if faults else "off"})
        self.host: MemoryHost = self.app.memory.host()
        self.service: CdromService = self.app.core.service()
        self.drive = DriveName.from_iface_index(_IFACE, _INDEX)
        self.vms = [vm_id(n) for n in range(vms)]
        for n, vm in enumerate(self.vms):
            self.host.add_vm(vm)
            self.host.add_drive(vm, _IFACE, _INDEX)
            self.host.add_volume(iso(n, 0))
            self.host.add_volume(iso(n, 1))

    def batch(self, target: Callable[[int], CdTarget]) -> Callable[[], None]:
        service, drive, vms = self.service, self.drive, self.vms
        targets = [(vm, target(n)) for n, vm in enumerate(vms)]

        def run() -> None:
            for vm, want in targets:
                if not service.change_cd(vm, drive, want).changed:
                    raise AssertionError(f"benchmark flow on {vm} changed nothing")

        return run

    def check_holds(self, which: int | None) -> None:
        for n, vm in enumerate(self.vms):
            held = self.host.drive(vm, self.drive).source
            want = None if which is None else block_path(iso(n, which))
            if held != want:
                raise AssertionError(f"VM {vm} holds {held}, expected {want}")


def flow_rates(vms: int, rounds: int) -> dict[str, Rates]:
    """Insert, change (twice) and eject on every one of ``vms`` VMs, ``rounds`` times.

    Each timed batch is one flow kind over all the VMs; a change sample is the median of
    its round's two batches (A to B, then B to A).
    """
    rig = _FlowHost(vms)
    samples: dict[str, list[float]] = {k: [] for k in FLOWS}
    insert = rig.batch(lambda n: LoadVolume(iso(n, 0)))
    to_b = rig.batch(lambda n: LoadVolume(iso(n, 1)))
    to_a = rig.batch(lambda n: LoadVolume(iso(n, 0)))
    eject = rig.batch(lambda _n: Eject())
    for _ in range(rounds):
        samples["insert"].append(vms / _timed(insert))
        rig.check_holds(0)
        change = [vms / _timed(to_b)]
        rig.check_holds(1)
        change.append(vms / _timed(to_a))
        rig.check_holds(0)
        samples["change"].append(_median(change))
        samples["eject"].append(vms / _timed(eject))
        rig.check_holds(None)
    return {k: Rates(tuple(v)) for k, v in samples.items()}


def calls_per_flow() -> dict[str, dict[str, object]]:
    """The port calls one successful insert, change and eject make, counted as they happen."""
    rig = _FlowHost(1, faults=True)
    vm, plan = rig.vms[0], rig.app.fault_plan()
    steps: list[tuple[str, CdTarget]] = [
        ("insert", LoadVolume(iso(0, 0))),
        ("change", LoadVolume(iso(0, 1))),
        ("eject", Eject()),
    ]
    found: dict[str, dict[str, object]] = {}
    for name, target in steps:
        plan.arm()
        if not rig.service.change_cd(vm, rig.drive, target).changed:
            raise AssertionError(f"the {name} flow changed nothing")
        made = [c.call for c in plan.trace]
        count = Counter(made)
        found[name] = {
            "metadata_writes": count["metadata.write"],
            "media_updates": sum(count[c] for c in MEDIA_CALLS),
            "reads": sum(count[c] for c in READ_CALLS),
            "calls": made,
        }
    return found


# --- Recovery ---------------------------------------------------------------------------

# What an interrupted flow leaves (the drive's state, what the tray holds, active volumes),
# by the volumes A (0) and B (1) of the VM. The settled half holds A and names it.
_Layout = tuple[Callable[[VolumeRef, VolumeRef], DriveState], int | None, tuple[int, ...]]
_SETTLED: _Layout = (lambda a, _b: Loaded(a), 0, (0,))
_LEFTOVERS: tuple[_Layout, ...] = (
    # change interrupted before the tray switched: tear B down, name A
    (Changing, 0, (0, 1)),
    # change interrupted after the tray switched: tear A down, name B
    (Changing, 1, (0, 1)),
    # insert interrupted before the load: tear B down, empty entry
    (lambda _a, b: Inserting(b), None, (1,)),
    # eject interrupted after the tray emptied: tear A down, empty entry
    (lambda a, _b: Ejecting(a), None, (0,)),
)
# vdsm's own values in a VM's block, beside our entry.
_VDSM_VALUES: tuple[tuple[str, dict[str, str], str], ...] = (
    ("clusterVersion", {}, "4.7"), ("destroy_on_reboot", {"type": "bool"}, "False"),
    ("launchPaused", {}, "false"), ("memGuaranteedSize", {"type": "int"}, "1024"),
    ("resumeBehavior", {}, "auto_resume"))


def _metadata_text(state: DriveState, drive: DriveName) -> str:
    """A VM's metadata block as libvirt returns it: vdsm's values, then our entry."""
    block = metadata_xml.new_block()
    for tag, attrs, text in _VDSM_VALUES:
        etree.SubElement(block, f"{{{metadata_xml.NS}}}{tag}", attrs).text = text
    metadata_xml.write(block, drive, state)
    return metadata_xml.serialize(block)


def recovery_host(vms: int) -> tuple[MemoryHost, CdromService, int]:
    """A host after a restart: ``vms`` VMs, every other one with an interrupted flow.

    Metadata is handed to the host as text, as libvirt returns it, so recovery parses it.
    Returns the host, a fresh service over it, and how many drives have leftovers.
    """
    app = build({"adapters": "memory"})
    host: MemoryHost = app.memory.host()
    drive = DriveName.from_iface_index(_IFACE, _INDEX)
    leftovers = 0
    for n in range(vms):
        vm = vm_id(n)
        volumes = (iso(n, 0), iso(n, 1))
        if n % 2:
            state_of, held, active = _LEFTOVERS[(n // 2) % len(_LEFTOVERS)]
            leftovers += 1
        else:
            state_of, held, active = _SETTLED
        host.add_vm(vm)
        host.set_raw_metadata(vm, _metadata_text(state_of(*volumes), drive))
        for which, volume in enumerate(volumes):
            host.add_volume(volume, active=which in active)
        host.add_drive(vm, _IFACE, _INDEX,
                       None if held is None else host.media_of(volumes[held]))
    service: CdromService = app.core.service()
    return host, service, leftovers


def recovery_seconds(vms: int, collector: bool = True) -> float:
    """Seconds ``recover_all`` takes on a fresh host of ``vms`` VMs, half with leftovers.

    ``collector=False`` times it with Python's cyclic garbage collector paused, which
    separates the core's own cost per VM from the collector's passes over a heap that
    grows with the host.
    """
    host, service, leftovers = recovery_host(vms)
    reports: list[RecoveryReport] = []
    paused = not collector and gc.isenabled()
    if paused:
        gc.disable()
    try:
        seconds = _timed(lambda: reports.append(service.recover_all()))
    finally:
        if paused:
            gc.enable()
    report = reports[0]
    changed = sum(1 for d in report.drives if d.changed)
    if not report.clean or changed != leftovers:
        raise AssertionError(f"recovery of {vms} VMs: clean={report.clean}, "
                             f"changed {changed} drives, expected {leftovers}")
    held = {host.volume_in(d.tray) for vm in host.vms.values() for d in vm.drives.values()}
    held.discard(None)
    if set(host.active_volumes()) != held:
        raise AssertionError(f"recovery of {vms} VMs left active volumes no VM holds")
    return seconds
