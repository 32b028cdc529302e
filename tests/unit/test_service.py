"""CdromService over the in-memory adapters, built by the container.

Every single fault (each port call failing before or after taking effect) and every crash
point on each flow is followed by ``recover_all()`` on a fresh service over the same host,
as after a restart; then the promises must hold.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Literal

import pytest
from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.container import Application, build
from ovirt_cdrom.domain.errors import (
    CdromError,
    DriveBusy,
    HypervisorError,
    HypervisorTimeout,
    MetadataError,
    MigrationInProgress,
    StorageError,
)
from ovirt_cdrom.domain.model import (
    CdromSlot,
    CdTarget,
    DriveName,
    Eject,
    LoadVolume,
    Unreadable,
    VmId,
    VolumeRef,
    block_volume_path,
)
from ovirt_cdrom.service import CdromService, ChangeResult

from .values import A, B, C

VM1 = VmId("6f4b1f2e-0c1d-4a8e-9b7a-3c2d1e0f9a8b")
VM2 = VmId("0b7c2f0e-3f7a-4b1e-8d8e-4a0a9c6f1d2e")
NS = metadata_xml.NS
UNRELATED = f"""<ovirt-vm:vm xmlns:ovirt-vm="{NS}">
    <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
    <!-- vdsm's -->
    <ovirt-vm:memGuaranteedSize type="int">1024</ovirt-vm:memGuaranteedSize>
    <ovirt-vm:device devtype="disk" name="sda">
        <ovirt-vm:domainID>{C.domain_id}</ovirt-vm:domainID>
        <ovirt-vm:imageID>{C.image_id}</ovirt-vm:imageID>
        <ovirt-vm:poolID>{C.pool_id}</ovirt-vm:poolID>
        <ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID>
        <ovirt-vm:volumeChain><ovirt-vm:volumeChainNode>
            <ovirt-vm:volumeID>{C.volume_id}</ovirt-vm:volumeID>
        </ovirt-vm:volumeChainNode></ovirt-vm:volumeChain>
    </ovirt-vm:device>
    <ovirt-vm:device mac_address="56:6f:4b:2c:00:01"/>
</ovirt-vm:vm>"""

Effect = Literal["before", "after"]


class Crash(BaseException):
    """The process dies here: nothing after it runs, no compensation."""


@dataclass
class Rig:
    app: Application
    host: MemoryHost
    service: CdromService
    drive: DriveName

    def fresh_service(self) -> CdromService:
        """A new service over the same host, as after a restart."""
        return CdromService(self.app.hypervisor(), self.app.volumes(), self.app.metadata())

    def tray(self, vm: VmId = VM1) -> str | None:
        return self.host.drive(vm, self.drive).source

    def slot(self, vm: VmId = VM1) -> CdromSlot | Unreadable:
        return CdromSlot.read(metadata_xml.read_entries(self.host.vm(vm).metadata,
                                                        self.drive))

    def loaded(self, volume: VolumeRef | None = None) -> None:
        """Put ``volume`` in VM1's tray through the service, then forget the calls."""
        if volume is not None:
            self.service.change_cd(VM1, self.drive, LoadVolume(volume))
        self.host.script.clear()


def make_rig(encoding: str = "design") -> Rig:
    app = build({"adapters": "memory", "metadata_encoding": encoding})
    host = app.memory.host()
    host.add_vm(VM1, metadata=UNRELATED)
    drive = host.add_drive(VM1, "sata", 2)
    for volume in (A, B):
        host.add_volume(volume)
    return Rig(app, host, app.core.service(), drive)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def unrelated(host: MemoryHost, vm: VmId = VM1) -> list[bytes]:
    """The VM's metadata but our drive's entries, canonicalised in order."""
    out = []
    for el in host.vm(vm).metadata:
        if isinstance(el, etree._Comment):
            out.append(b"<!--" + (el.text or "").encode() + b"-->")
        elif el.get("name") != "sdc":
            out.append(etree.tostring(el, method="c14n"))
    return out


def assert_promises(rig: Rig, vm: VmId = VM1) -> None:
    """No marker, metadata names exactly what the tray holds, nothing active unheld."""
    host = rig.host
    tray = rig.tray(vm)
    entries = metadata_xml.read_entries(host.vm(vm).metadata, rig.drive)
    assert not isinstance(entries, Unreadable), entries
    assert all(e.state is None for e in entries), entries
    slot = CdromSlot.from_entries(entries)
    held = host.volume_at(tray)
    assert slot.current == held, (slot, tray)
    held_anywhere = {host.volume_at(d.source) for v in host.vms.values()
                     for d in v.drives.values()}
    assert set(host.active_volumes()) <= held_anywhere, host.active_volumes()


MEMBERS = ["hypervisor.is_migrating", "hypervisor.cdrom", "metadata.read"]


# --- Happy paths: the exact port call sequence -------------------------------------------


def test_insert_call_sequence(rig: Rig) -> None:
    rig.loaded(None)
    result = rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
    assert rig.host.script.calls == [*MEMBERS, "metadata.write", "volumes.prepare",
                                     "hypervisor.load", "metadata.write"]
    assert result.changed and result.clean and not result.recovered
    assert rig.tray() == block_volume_path(A)
    assert rig.host.active_volumes() == [A]
    assert rig.slot() == CdromSlot(current=A)


def test_change_call_sequence(rig: Rig) -> None:
    rig.loaded(A)
    rig.service.change_cd(VM1, rig.drive, LoadVolume(B))
    assert rig.host.script.calls == [*MEMBERS, "metadata.write", "volumes.prepare",
                                     "hypervisor.load", "volumes.teardown", "metadata.write"]
    assert rig.tray() == block_volume_path(B)
    assert rig.host.active_volumes() == [B]
    assert rig.slot() == CdromSlot(current=B)


def test_eject_call_sequence(rig: Rig) -> None:
    rig.loaded(A)
    rig.service.change_cd(VM1, rig.drive, Eject())
    assert rig.host.script.calls == [*MEMBERS, "metadata.write", "hypervisor.eject",
                                     "volumes.teardown", "metadata.write"]
    assert rig.tray() is None
    assert rig.host.active_volumes() == []
    assert rig.slot() == CdromSlot()
    assert metadata_xml.read_entries(rig.host.vm(VM1).metadata, rig.drive) == (
        CdromSlot().entries())


@pytest.mark.parametrize("encoding", ["design", "vdsm-4.50"])
def test_flows_leave_unrelated_metadata_unchanged(encoding: str) -> None:
    rig = make_rig(encoding)
    before = unrelated(rig.host)
    for target in (LoadVolume(A), LoadVolume(B), Eject()):
        rig.service.change_cd(VM1, rig.drive, target)
        assert unrelated(rig.host) == before
    assert_promises(rig)


def test_noop_change_makes_no_write(rig: Rig) -> None:
    rig.loaded(A)
    result = rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
    assert not result.changed
    assert rig.host.script.calls == MEMBERS


def test_noop_eject_of_empty_tray_makes_no_write(rig: Rig) -> None:
    result = rig.service.change_cd(VM1, rig.drive, Eject())
    assert not result.changed
    assert "metadata.write" not in rig.host.script.calls


def test_migration_refused_before_anything(rig: Rig) -> None:
    rig.loaded(A)
    rig.host.vm(VM1).migrating = True
    with pytest.raises(MigrationInProgress) as exc:
        rig.service.change_cd(VM1, rig.drive, LoadVolume(B))
    assert exc.value.code == 51
    assert rig.host.script.calls == ["hypervisor.is_migrating"]
    assert rig.tray() == block_volume_path(A) and rig.host.active_volumes() == [A]


def test_leftover_is_recovered_before_a_new_change(rig: Rig) -> None:
    # A crash left an insert half done: B active and marked loading, tray empty (insert.2).
    rig.host.volumes[B] = True
    metadata_xml.write_entries(rig.host.vm(VM1).metadata, rig.drive,
                               CdromSlot(loading=B).entries())
    result = rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
    assert result.recovered and result.clean
    calls = rig.host.script.calls
    assert calls.index("volumes.teardown") < calls.index("volumes.prepare")
    assert rig.host.active_volumes() == [A]
    assert_promises(rig)


def test_leftover_that_cannot_be_cleaned_refuses_the_change(rig: Rig) -> None:
    rig.host.volumes[B] = True
    metadata_xml.write_entries(rig.host.vm(VM1).metadata, rig.drive,
                               CdromSlot(loading=B).entries())
    rig.host.script.fail("volumes.teardown", StorageError("lvchange failed"))
    with pytest.raises(DriveBusy) as exc:
        rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
    assert exc.value.code == 100
    assert "volumes.prepare" not in rig.host.script.calls
    assert rig.tray() is None and rig.slot() == CdromSlot(loading=B)


# --- Two VMs sharing a volume ------------------------------------------------------------


def two_vms(rig: Rig) -> None:
    rig.host.add_vm(VM2)
    rig.host.add_drive(VM2, "sata", 2)
    rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
    rig.service.change_cd(VM2, rig.drive, LoadVolume(A))


def test_eject_of_shared_volume_leaves_it_active_for_the_other_vm(rig: Rig) -> None:
    two_vms(rig)
    rig.service.change_cd(VM1, rig.drive, Eject())
    assert rig.host.volumes[A] is True
    assert rig.tray(VM2) == block_volume_path(A)
    assert rig.slot(VM1) == CdromSlot() and rig.slot(VM2) == CdromSlot(current=A)
    rig.service.change_cd(VM2, rig.drive, Eject())
    assert rig.host.volumes[A] is False
    assert_promises(rig, VM1)
    assert_promises(rig, VM2)


def test_shared_volume_is_not_torn_down_while_another_vm_loads_it(rig: Rig) -> None:
    rig.host.add_vm(VM2)
    rig.host.add_drive(VM2, "sata", 2)
    rig.service.change_cd(VM2, rig.drive, LoadVolume(A))
    entered, go = threading.Event(), threading.Event()

    def pause_first_load(name: str) -> None:
        if not entered.is_set():
            entered.set()
            assert go.wait(10)
    rig.host.script.before("hypervisor.load", pause_first_load)
    errors: list[BaseException] = []

    def insert_vm1() -> None:
        try:
            rig.service.change_cd(VM1, rig.drive, LoadVolume(A))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
    t = threading.Thread(target=insert_vm1)
    t.start()
    assert entered.wait(10)  # VM1 prepared A and is about to load it
    rig.host.script.calls.clear()
    rig.service.change_cd(VM2, rig.drive, Eject())  # VM2 lets go of A meanwhile
    assert "volumes.teardown" not in rig.host.script.calls  # VM1 still needs it
    go.set()
    t.join(10)
    assert not errors
    assert rig.tray(VM1) == block_volume_path(A) and rig.host.volumes[A] is True
    assert_promises(rig, VM1)
    assert_promises(rig, VM2)


def test_recover_all_does_not_tear_down_a_volume_another_vm_holds(rig: Rig) -> None:
    two_vms(rig)
    # VM1 crashed while ejecting A: marker left, tray empty (eject.2); VM2 still holds A.
    rig.host.drive(VM1, rig.drive).source = None
    metadata_xml.write_entries(rig.host.vm(VM1).metadata, rig.drive,
                               CdromSlot(current=A, ejecting=True).entries())
    report = rig.fresh_service().recover_all()
    assert report.clean
    assert rig.host.volumes[A] is True
    assert_promises(rig, VM1)
    assert_promises(rig, VM2)


# --- Per-drive serialization -------------------------------------------------------------


def test_calls_on_one_drive_wait_for_each_other(rig: Rig) -> None:
    other = rig.host.add_drive(VM1, "sata", 3)
    entered, go = threading.Event(), threading.Event()
    log: list[tuple[str, str]] = []

    def record(name: str) -> None:
        log.append((threading.current_thread().name, name))

    def pause_first_prepare(name: str) -> None:
        if not entered.is_set():
            entered.set()
            assert go.wait(10)
    rig.host.script.before("*", record)
    rig.host.script.before("volumes.prepare", pause_first_prepare)
    results: dict[str, object] = {}

    def change(name: str, drive: DriveName, target: CdTarget) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = rig.service.change_cd(VM1, drive, target)
            except BaseException as err:  # pragma: no cover - reported below
                results[name] = err
        t = threading.Thread(target=run, name=name)
        t.start()
        return t

    first = change("first", rig.drive, LoadVolume(A))
    assert entered.wait(10)
    second = change("second", rig.drive, LoadVolume(A))
    # Another drive is not held up by the paused one.
    change("other", other, LoadVolume(B)).join(10)
    second.join(0.5)
    assert second.is_alive(), "the second call on the drive did not wait"
    assert [n for t, n in log if t == "second"] == []
    go.set()
    first.join(10)
    second.join(10)
    by_thread = [t for t, _ in log if t in ("first", "second")]
    assert by_thread == sorted(by_thread), log  # every call of first before any of second
    first_result, second_result = results["first"], results["second"]
    assert isinstance(first_result, ChangeResult) and first_result.changed
    assert isinstance(second_result, ChangeResult)
    assert not second_result.changed  # started from what the first left: a no-op
    assert isinstance(results["other"], ChangeResult)
    assert rig.host.drive(VM1, other).source == block_volume_path(B)
    assert_promises(rig)


# --- Every single fault and every crash, then recovery -----------------------------------


def flow_setup(flow: str) -> tuple[VolumeRef | None, CdTarget]:
    return {"insert": (None, LoadVolume(A)), "change": (A, LoadVolume(B)),
            "eject": (A, Eject())}[flow]  # type: ignore[return-value]


def happy_calls(flow: str) -> list[str]:
    rig = make_rig()
    start, target = flow_setup(flow)
    rig.loaded(start)
    rig.service.change_cd(VM1, rig.drive, target)
    return list(rig.host.script.calls)


def error_for(call: str, effect: Effect) -> CdromError:
    if call.startswith("hypervisor."):
        return HypervisorTimeout("no answer") if effect == "after" else HypervisorError("no")
    if call.startswith("metadata."):
        return MetadataError("write failed")
    return StorageError("lvm failed")


FAULT_POINTS = [(f, k, c, e) for f in ("insert", "change", "eject")
                for k, c in enumerate(happy_calls(f)) for e in ("before", "after")]


ENCODINGS = ["design", "vdsm-4.50"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("flow", "k", "call", "effect"), FAULT_POINTS,
                         ids=[f"{f}-{k}-{c}-{e}" for f, k, c, e in FAULT_POINTS])
def test_single_fault_then_recovery_keeps_the_promises(flow: str, k: int, call: str,
                                                       effect: Effect, encoding: str) -> None:
    rig = make_rig(encoding)
    start, target = flow_setup(flow)
    rig.loaded(start)
    before_unrelated = unrelated(rig.host)
    old_tray = rig.tray()
    new_volume = target.volume if isinstance(target, LoadVolume) else None
    new_tray = block_volume_path(new_volume) if new_volume else None
    skip = happy_calls(flow)[:k].count(call)
    rig.host.script.fail(call, error_for(call, effect), effect=effect, skip=skip)
    try:
        rig.service.change_cd(VM1, rig.drive, target)
    except CdromError as err:
        assert err.code in (1, 41, 51, 100, 1630)
        assert rig.tray() == old_tray  # atomic: an error leaves the old CD
    else:
        assert rig.tray() == new_tray  # a success leaves the new CD
    rig.host.script.clear()
    report = rig.fresh_service().recover_all()
    assert report.clean, report
    assert_promises(rig)
    assert unrelated(rig.host) == before_unrelated


CRASH_POINTS = [(f, k) for f in ("insert", "change", "eject")
                for k in range(len(happy_calls(f)) + 1)]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("flow", "k"), CRASH_POINTS,
                         ids=[f"{f}-before-call-{k}" for f, k in CRASH_POINTS])
def test_crash_then_recovery_keeps_the_promises(flow: str, k: int, encoding: str) -> None:
    rig = make_rig(encoding)
    start, target = flow_setup(flow)
    rig.loaded(start)
    before_unrelated = unrelated(rig.host)
    seen = [0]

    def crash_at_k(name: str) -> None:
        seen[0] += 1
        if seen[0] == k + 1:
            raise Crash(name)
    rig.host.script.before("*", crash_at_k)
    try:
        rig.service.change_cd(VM1, rig.drive, target)
    except Crash:
        pass
    else:
        assert k == len(happy_calls(flow))  # only "after the last call" does not crash
    rig.host.script.clear()
    report = rig.fresh_service().recover_all()
    assert report.clean, report
    assert_promises(rig)
    assert unrelated(rig.host) == before_unrelated


@pytest.mark.parametrize("flow", ["insert", "change", "eject"])
def test_failed_change_then_retry_succeeds(flow: str) -> None:
    """After any failed call, the same request again (the engine's retry) succeeds."""
    for k, call in enumerate(happy_calls(flow)):
        rig = make_rig()
        start, target = flow_setup(flow)
        rig.loaded(start)
        skip = happy_calls(flow)[:k].count(call)
        rig.host.script.fail(call, error_for(call, "before"), skip=skip)
        with contextlib.suppress(CdromError):
            rig.service.change_cd(VM1, rig.drive, target)
        rig.host.script.clear()
        rig.service.change_cd(VM1, rig.drive, target)
        new_volume = target.volume if isinstance(target, LoadVolume) else None
        assert rig.host.volume_at(rig.tray()) == new_volume, (k, call)
        assert_promises(rig)
