"""Concurrency: calls on one drive are serialized; a volume one VM is loading or holds is
never torn down by another VM's eject, change or recovery.

Interleavings are forced with barriers: ``host.script.before`` hooks that block one named
thread at one port call until the test releases it (``threading.Event``), never sleeps.
The only timed wait is a bounded *negative* check (a thread that must stay blocked does
not reach the host).
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.domain.model import CdromSlot, block_volume_path

from .harness import FIGURES, Rig, build_rig, expected_tray, spec, unrecorded_active

SUCCESS: dict[str, Any] = {"vmList": {}}
WAIT = 10.0          # upper bound for what must happen (a deadlock fails instead of hanging)
STAYS_BLOCKED = 0.2  # how long a blocked thread is watched not to reach the host
X, Y = 0, 1


class Barrier:
    """Pause thread ``who`` at port call ``call`` until :meth:`release`."""

    def __init__(self, rig: Rig, who: str, call: str) -> None:
        self.reached, self.go = threading.Event(), threading.Event()

        def hook(name: str) -> None:
            if threading.current_thread().name == who and not self.reached.is_set():
                self.reached.set()
                assert self.go.wait(WAIT), "never released"

        rig.host.script.before(call, hook)

    def release(self) -> None:
        self.go.set()


def run(name: str, fn: Callable[[], Any], results: dict[str, Any]) -> threading.Thread:
    def target() -> None:
        try:
            results[name] = fn()
        except BaseException as err:  # reported by the test
            results[name] = err

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), f"{t.name} is stuck"


def storage_teardowns(rig: Rig, volume: int) -> list[str]:
    vol = str(rig.volumes[volume])
    return [t.outcome for t in rig.plan.trace if t.method == "teardown" and t.args == vol]


def assert_settled(rig: Rig) -> None:
    found = violations(rig.host, rig.baseline, settled=True) + unrecorded_active(rig)
    assert not found, found


# --- One drive ---------------------------------------------------------------------------


def test_second_change_on_a_drive_waits_for_the_first() -> None:
    rig = build_rig(layout=((("sata", 2),),), missing_volume=False)
    d = rig.drives[0]
    first = Barrier(rig, "first", "hypervisor.load")
    second_reached_host = threading.Event()
    rig.host.script.before("*", lambda name: (
        second_reached_host.set() if threading.current_thread().name == "second" else None))
    results: dict[str, Any] = {}
    t1 = run("first", lambda: rig.api.changeCD(str(d.vm), spec(d, ("volume", X), rig)),
             results)
    assert first.reached.wait(WAIT)
    t2 = run("second", lambda: rig.api.changeCD(str(d.vm), spec(d, ("volume", Y), rig)),
             results)
    assert not second_reached_host.wait(STAYS_BLOCKED), "the second call did not wait"
    first.release()
    join(t1, t2)
    FIGURES["concurrency: deterministic interleavings"] += 1
    assert results == {"first": SUCCESS, "second": SUCCESS}
    assert rig.tray(d) == block_volume_path(rig.volumes[Y])
    assert rig.slot(d) == CdromSlot(current=rig.volumes[Y])
    assert rig.host.active_volumes() == [rig.volumes[Y]]
    assert_settled(rig)


@pytest.mark.parametrize("seed", range(5))
def test_concurrent_changes_on_one_drive_never_interleave(seed: int) -> None:
    """Each call's port calls form one uninterrupted run; the end state is one request."""
    rig = build_rig(layout=((("sata", 2),),), n_files=1, missing_volume=False)
    d = rig.drives[0]
    order: list[str] = []
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock:
            order.append(threading.current_thread().name)

    rig.host.script.before("*", record)
    rng = random.Random(seed)
    cds = [("volume", 0), ("volume", 1), ("volume", 2), ("eject",), ("path", 0),
           ("path-eject",)]
    requests = {f"t{n}": rng.choice(cds) for n in range(6)}
    start = threading.Barrier(len(requests))
    results: dict[str, Any] = {}

    def call(cd: tuple[Any, ...]) -> Any:
        start.wait(WAIT)
        return rig.api.changeCD(str(d.vm), spec(d, cd, rig))

    threads = [run(name, functools.partial(call, cd), results) for name, cd in requests.items()]
    join(*threads)
    FIGURES["concurrency: deterministic interleavings"] += 1
    assert all(r == SUCCESS for r in results.values()), results
    runs = [name for n, name in enumerate(order) if n == 0 or order[n - 1] != name]
    assert len(runs) == len(set(runs)), f"calls interleaved: {runs}"
    last = requests[runs[-1]]
    assert rig.tray(d) == expected_tray(last, rig)
    assert_settled(rig)


# --- Across VMs: one volume, two VMs -------------------------------------------------------

A_DRIVE, B_DRIVE = 1, 0  # B is the first VM: recover_all reaches it before A
TWO_VMS = ((("sata", 2),), (("sata", 2),))


def b_eject(rig: Rig) -> Any:
    d = rig.drives[B_DRIVE]
    return rig.api.changeCD(str(d.vm), spec(d, ("eject",), rig))


def b_change(rig: Rig) -> Any:
    d = rig.drives[B_DRIVE]
    return rig.api.changeCD(str(d.vm), spec(d, ("volume", Y), rig))


def b_legacy_path(rig: Rig) -> Any:
    d = rig.drives[B_DRIVE]
    return rig.api.changeCD(str(d.vm), spec(d, ("path", 0), rig))


def b_recover(rig: Rig) -> Any:
    report = rig.service.recover(rig.drives[B_DRIVE].vm)
    return SUCCESS if report.clean else report


def b_recover_all(rig: Rig) -> Any:
    report = rig.service.recover_all()
    return SUCCESS if report.clean else report


def holding_b(rig: Rig) -> None:
    """B holds X (settled)."""
    d = rig.drives[B_DRIVE]
    assert rig.api.changeCD(str(d.vm), spec(d, ("volume", X), rig)) == SUCCESS


def leftover_b(rig: Rig) -> None:
    """B ejected X but died before tearing it down: an `ejecting` marker, X active."""
    d = rig.drives[B_DRIVE]
    holding_b(rig)
    rig.host.drive(d.vm, d.name).source = None
    rig.host.vm(d.vm).write_entries(
        d.name, CdromSlot(current=rig.volumes[X], ejecting=True).entries(), rig.encoding)


B_ACTIONS = {
    "eject": (holding_b, b_eject),
    "change": (holding_b, b_change),
    "legacy-path": (holding_b, b_legacy_path),
    "recover": (leftover_b, b_recover),
    "recover_all": (leftover_b, b_recover_all),
}


@pytest.mark.parametrize("action", list(B_ACTIONS))
def test_volume_another_vm_is_loading_is_not_torn_down(action: str) -> None:
    """A prepared X and is paused before the media change (LVM's "in use" cannot see it);
    B lets go of X meanwhile. X must stay active and A's load must succeed."""
    rig = build_rig(layout=TWO_VMS, missing_volume=False)
    prepare_b, act_b = B_ACTIONS[action]
    prepare_b(rig)
    a = rig.drives[A_DRIVE]
    a_paused = Barrier(rig, "A", "hypervisor.load")
    rig.plan.reset()
    results: dict[str, Any] = {}
    ta = run("A", lambda: rig.api.changeCD(str(a.vm), spec(a, ("volume", X), rig)), results)
    assert a_paused.reached.wait(WAIT)
    if action == "recover_all":
        # Recovery of B comes first, then it waits for A's drive: run it aside and let A go
        # once B's drive is done (its metadata written).
        b_done = threading.Event()
        rig.host.script.before("metadata.write", lambda name: (
            b_done.set() if threading.current_thread().name == "B" else None))
        tb = run("B", lambda: act_b(rig), results)
        assert b_done.wait(WAIT)
        a_paused.release()
        join(ta, tb)
    else:
        results["B"] = act_b(rig)
        a_paused.release()
        join(ta)
    FIGURES["concurrency: deterministic interleavings"] += 1
    assert results == {"A": SUCCESS, "B": SUCCESS}
    assert storage_teardowns(rig, X) == [], "X was torn down while A was loading it"
    assert rig.host.volumes[rig.volumes[X]]
    assert rig.tray(a) == block_volume_path(rig.volumes[X])
    rig.plan.reset()
    assert rig.service.recover_all().clean
    assert_settled(rig)


@pytest.mark.parametrize("restarted", [False, True], ids=["same-agent", "after-restart"])
@pytest.mark.parametrize("action", list(B_ACTIONS))
def test_volume_another_vm_holds_is_not_torn_down(action: str, restarted: bool) -> None:
    """A holds X; B lets go of X. No teardown reaches storage: the host-wide users know A
    holds X (after a restart, as rebuilt by recovery), not only LVM's "in use" refusal."""
    rig = build_rig(layout=TWO_VMS, missing_volume=False)
    a = rig.drives[A_DRIVE]
    assert rig.api.changeCD(str(a.vm), spec(a, ("volume", X), rig)) == SUCCESS
    prepare_b, act_b = B_ACTIONS[action]
    prepare_b(rig)
    if restarted:
        rig.restart()
        if action not in ("recover", "recover_all"):
            assert rig.service.recover_all().clean
    rig.plan.reset()
    assert act_b(rig) == SUCCESS
    FIGURES["concurrency: deterministic interleavings"] += 1
    if restarted and action == "recover":
        # A fresh agent recovering B alone has not seen A yet (recover_all would): the
        # teardown reaches storage, which refuses it because A's QEMU holds X open. Safe:
        # after a restart no VM can be between prepare and load.
        assert all("in use" in t for t in storage_teardowns(rig, X))
    else:
        assert storage_teardowns(rig, X) == []
    assert rig.host.volumes[rig.volumes[X]]
    assert rig.tray(a) == block_volume_path(rig.volumes[X])
    assert_settled(rig)


# --- Stress --------------------------------------------------------------------------------

VMS, VOLUMES, THREADS, OPS = 20, 3, 8, 60


def test_threaded_stress_many_vms_few_volumes() -> None:
    rig = build_rig(layout=tuple((("sata", 2),) for _ in range(VMS)), n_volumes=VOLUMES,
                    n_files=2, missing_volume=False)
    cds = [*(("volume", n) for n in range(VOLUMES)), ("eject",), ("path", 0), ("path-eject",)]
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait(WAIT)
        for _ in range(OPS):
            d = rng.choice(rig.drives)
            roll = rng.random()
            if roll < 0.05:
                report = rig.service.recover_all()
                ok = report.clean
            elif roll < 0.12:
                ok = rig.service.recover(d.vm).clean
            else:
                ok = rig.api.changeCD(str(d.vm), spec(d, rng.choice(cds), rig)) == SUCCESS
            if not ok:
                failures.append(f"worker {seed} op failed")
            found = violations(rig.host, rig.baseline, settled=False)
            if found:
                failures.extend(found)

    threads = [threading.Thread(target=worker, args=(n,), name=f"w{n}") for n in range(THREADS)]
    for t in threads:
        t.start()
    join(*threads)
    FIGURES["concurrency: stress operations"] += THREADS * OPS
    assert not failures, failures[:5]
    assert rig.service.recover_all().clean
    assert_settled(rig)
    users = rig.service.volume_users()
    for volume in rig.host.active_volumes():
        assert {(k.vm, k.drive) for k in users.get(volume, ())} == set(rig.host.holders(volume))
