"""Concurrency: calls on one drive are serialized; a volume one VM is loading or holds is
never torn down by another VM's eject, change or recovery.

Interleavings are forced with barriers: the fault plan's ``before`` hooks (``rig.before``)
that block one named thread at one named port call until the test releases it
(``threading.Event``), never sleeps.
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
from ovirt_cdrom.domain.state import Ejecting, Loaded
from rig import SUCCESS, Rig

from .harness import (
    FIGURES,
    Drive,
    Layout,
    Target,
    broken,
    build_rig,
    drives_of,
    expected_tray,
    spec,
    tray,
    tray_of,
    vol,
)

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

        rig.before(call, hook)

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


def request(rig: Rig, drive: Drive, target: Target) -> Any:
    """``VM.changeCD`` from the calling thread (not a step of its own)."""
    return rig.api.changeCD(str(drive.vm), spec(drive, target))


def storage_teardowns(rig: Rig, volume: int) -> list[str]:
    """What became of each teardown of the volume that reached storage, since the trace
    was last emptied."""
    name = str(vol(volume))
    return [t.outcome for t in rig.plan.trace
            if t.call == "volumes.teardown" and t.args == name]


def assert_settled(rig: Rig) -> None:
    found = broken(rig, settled=True)
    assert not found, found


# --- One drive ---------------------------------------------------------------------------


def test_second_change_on_a_drive_waits_for_the_first() -> None:
    rig, (d,) = build_rig(layout=((("sata", 2),),))
    first = Barrier(rig, "first", "hypervisor.load")
    second_reached_host = threading.Event()
    rig.before("*", lambda name: (
        second_reached_host.set() if threading.current_thread().name == "second" else None))
    results: dict[str, Any] = {}
    t1 = run("first", lambda: request(rig, d, ("volume", X)), results)
    assert first.reached.wait(WAIT)
    t2 = run("second", lambda: request(rig, d, ("volume", Y)), results)
    assert not second_reached_host.wait(STAYS_BLOCKED), "the second call did not wait"
    first.release()
    join(t1, t2)
    FIGURES["concurrency: deterministic interleavings"] += 1
    assert results == {"first": SUCCESS, "second": SUCCESS}
    assert tray(rig, d) == tray_of(vol(Y))
    assert rig.state(d.vm, d.name) == Loaded(vol(Y))
    assert rig.active() == {vol(Y)}
    assert_settled(rig)


@pytest.mark.parametrize("seed", range(5))
def test_concurrent_changes_on_one_drive_never_interleave(seed: int) -> None:
    """Each call's port calls form one uninterrupted run; the end state is one request."""
    rig, (d,) = build_rig(layout=((("sata", 2),),), n_files=1)
    order: list[str] = []
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock:
            order.append(threading.current_thread().name)

    rig.before("*", record)
    rng = random.Random(seed)
    cds: list[Target] = [("volume", 0), ("volume", 1), ("volume", 2), ("eject",),
                         ("path", 0), ("path-eject",)]
    requests = {f"t{n}": rng.choice(cds) for n in range(6)}
    start = threading.Barrier(len(requests))
    results: dict[str, Any] = {}

    def call(cd: Target) -> Any:
        start.wait(WAIT)
        return request(rig, d, cd)

    threads = [run(name, functools.partial(call, cd), results) for name, cd in requests.items()]
    join(*threads)
    FIGURES["concurrency: deterministic interleavings"] += 1
    assert all(r == SUCCESS for r in results.values()), results
    runs = [name for n, name in enumerate(order) if n == 0 or order[n - 1] != name]
    assert len(runs) == len(set(runs)), f"calls interleaved: {runs}"
    last = requests[runs[-1]]
    assert tray(rig, d) == expected_tray(last)
    assert_settled(rig)


# --- Across VMs: one volume, two VMs -------------------------------------------------------

A_DRIVE, B_DRIVE = 1, 0  # B is the first VM: recover_all reaches it before A
TWO_VMS: Layout = ((("sata", 2),), (("sata", 2),))
B_SIDE = drives_of(TWO_VMS)[B_DRIVE]


def b_eject(rig: Rig) -> Any:
    return request(rig, B_SIDE, ("eject",))


def b_change(rig: Rig) -> Any:
    return request(rig, B_SIDE, ("volume", Y))


def b_legacy_path(rig: Rig) -> Any:
    return request(rig, B_SIDE, ("path", 0))


def b_recover(rig: Rig) -> Any:
    report = rig.service.recover(B_SIDE.vm)
    return SUCCESS if report.clean else report


def b_recover_all(rig: Rig) -> Any:
    report = rig.service.recover_all()
    return SUCCESS if report.clean else report


def holding_b(rig: Rig) -> None:
    """B holds X (settled)."""
    assert request(rig, B_SIDE, ("volume", X)) == SUCCESS


def leftover_b(rig: Rig) -> None:
    """B ejected X but died before tearing it down: an `ejecting` marker, X active."""
    holding_b(rig)
    rig.host.put(B_SIDE.vm, B_SIDE.name, None)
    rig.write(B_SIDE.vm, B_SIDE.name, Ejecting(vol(X)))


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
    rig, drives = build_rig(layout=TWO_VMS)
    prepare_b, act_b = B_ACTIONS[action]
    prepare_b(rig)
    a = drives[A_DRIVE]
    a_paused = Barrier(rig, "A", "hypervisor.load")
    rig.plan.begin_step()  # the trace from here on
    results: dict[str, Any] = {}
    ta = run("A", lambda: request(rig, a, ("volume", X)), results)
    assert a_paused.reached.wait(WAIT)
    if action == "recover_all":
        # Recovery of B comes first, then it waits for A's drive: run it aside and let A go
        # once B's drive is done (its metadata written).
        b_done = threading.Event()
        rig.before("metadata.write", lambda name: (
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
    assert vol(X) in rig.active()
    assert tray(rig, a) == tray_of(vol(X))
    report = rig.step(rig.service.recover_all)
    assert report is not None and report.clean
    assert_settled(rig)


@pytest.mark.parametrize("restarted", [False, True], ids=["same-agent", "after-restart"])
@pytest.mark.parametrize("action", list(B_ACTIONS))
def test_volume_another_vm_holds_is_not_torn_down(action: str, restarted: bool) -> None:
    """A holds X; B lets go of X. No teardown reaches storage: the host-wide users know A
    holds X (after a restart, as rebuilt by recovery), not only LVM's "in use" refusal."""
    rig, drives = build_rig(layout=TWO_VMS)
    a = drives[A_DRIVE]
    assert request(rig, a, ("volume", X)) == SUCCESS
    prepare_b, act_b = B_ACTIONS[action]
    prepare_b(rig)
    if restarted:
        rig.restart()
        if action not in ("recover", "recover_all"):
            assert rig.service.recover_all().clean
    assert rig.step(lambda: act_b(rig)) == SUCCESS
    FIGURES["concurrency: deterministic interleavings"] += 1
    if restarted and action == "recover":
        # A fresh agent recovering B alone has not seen A yet (recover_all would): the
        # teardown reaches storage, which refuses it because A's QEMU holds X open. Safe:
        # after a restart no VM can be between prepare and load.
        assert all("in use" in t for t in storage_teardowns(rig, X))
    else:
        assert storage_teardowns(rig, X) == []
    assert vol(X) in rig.active()
    assert tray(rig, a) == tray_of(vol(X))
    assert_settled(rig)


# --- Stress --------------------------------------------------------------------------------

VMS, VOLUMES, THREADS, OPS = 20, 3, 8, 60


def test_threaded_stress_many_vms_few_volumes() -> None:
    rig, drives = build_rig(layout=tuple((("sata", 2),) for _ in range(VMS)),
                            n_volumes=VOLUMES, n_files=2)
    cds: list[Target] = [*(("volume", n) for n in range(VOLUMES)), ("eject",), ("path", 0),
                         ("path-eject",)]
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait(WAIT)
        for _ in range(OPS):
            d = rng.choice(drives)
            roll = rng.random()
            if roll < 0.05:
                report = rig.service.recover_all()
                ok = report.clean
            elif roll < 0.12:
                ok = rig.service.recover(d.vm).clean
            else:
                ok = request(rig, d, rng.choice(cds)) == SUCCESS
            if not ok:
                failures.append(f"worker {seed} op failed")
            found = rig.violations(settled=False)
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
    for volume in rig.active():
        assert users.get(volume, frozenset()) == set(rig.host.holders(volume))
