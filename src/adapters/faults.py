"""Fault and crash injection as port decorators, for any adapter set.

Each decorator wraps one port and sends every call through a shared :class:`FaultPlan`,
which counts calls across the three ports (reads included) and, at the planned call:

* ``fail_at_call=N``: raises an error typed for that port, ``before`` the call (it has no
  effect) or ``after`` it (it took effect, then failed — as a timeout does);
* ``failures={N: effect, M: effect}``: the same at several calls of one step (an operation
  and its compensation both failing), each with its own effect;
* ``crash_at_call=N``: runs the plan's ``crash`` action just before call N. In process
  (the simulator) it raises :class:`SimulatedCrash`, a ``BaseException`` that no ``except
  Exception`` or flow compensation catches, so the service dies as a killed process would;
  for real crash tests it is ``os.kill(os.getpid(), SIGKILL)``.

Every call is also recorded in ``plan.trace`` (port, method, arguments, outcome), which the
simulator shows with ``--trace``. The core knows nothing of this: the container wires the
decorators around the adapters it was going to use anyway.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn, TypeVar

from ovirt_cdrom.domain.errors import (
    CdromError,
    HypervisorError,
    HypervisorTimeout,
    MetadataError,
    StorageError,
)
from ovirt_cdrom.domain.model import CdEntry, DriveEntries, DriveName, Media, VmId, VolumeRef
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator

T = TypeVar("T")
Effect = Literal["before", "after"]


class SimulatedCrash(BaseException):
    """The process died here. Deliberately not an ``Exception``."""


def raise_crash() -> NoReturn:
    raise SimulatedCrash("crash injected")


def kill_self() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise SimulatedCrash("SIGKILL did not stop the process")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class TracedCall:
    number: int
    port: str
    method: str
    args: str
    outcome: str  # "ok", "failed: ...", "injected failure (before|after): ...", "crash"


def _injected_error(port: str, method: str, effect: Effect) -> CdromError:
    what = f"injected failure of {port}.{method}"
    if port == "hypervisor":
        return HypervisorTimeout(what) if effect == "after" else HypervisorError(what)
    if port == "volumes":
        return StorageError(what)
    return MetadataError(what)


@dataclass
class FaultPlan:
    fail_at_call: int | None = None
    fail_effect: Effect = "before"
    crash_at_call: int | None = None
    crash: Callable[[], NoReturn] = raise_crash
    failures: dict[int, Effect] = field(default_factory=dict)
    calls: int = 0
    injected: bool = False
    trace: list[TracedCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self, fail_at_call: int | None = None, fail_effect: Effect = "before",
              crash_at_call: int | None = None,
              failures: Mapping[int, Effect] | None = None) -> None:
        """Arm the plan for the next step: counts restart at 1."""
        with self._lock:
            self.fail_at_call, self.fail_effect = fail_at_call, fail_effect
            self.crash_at_call = crash_at_call
            self.failures = dict(failures or {})
            self.calls, self.injected = 0, False
            self.trace = []

    def call(self, port: str, method: str, fn: Callable[[], T], args: str = "") -> T:
        with self._lock:
            self.calls += 1
            number = self.calls
            crash = number == self.crash_at_call
            effect = self.failures.get(
                number, self.fail_effect if number == self.fail_at_call else None)
            fail = effect is not None
            if crash or fail:
                self.injected = True
        if crash:
            self._record(number, port, method, args, "crash")
            self.crash()
        if fail and effect == "before":
            err = _injected_error(port, method, "before")
            self._record(number, port, method, args, f"injected failure (before): {err}")
            raise err
        try:
            result = fn()
        except CdromError as failure:
            self._record(number, port, method, args, f"failed: {failure}")
            raise
        if fail:
            late = _injected_error(port, method, "after")
            self._record(number, port, method, args, f"injected failure (after): {late}")
            raise late
        self._record(number, port, method, args, "ok")
        return result

    def _record(self, number: int, port: str, method: str, args: str, outcome: str) -> None:
        with self._lock:
            self.trace.append(TracedCall(number, port, method, args, outcome))


class FaultyHypervisor(Hypervisor):
    def __init__(self, inner: Hypervisor, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def vm_ids(self) -> list[VmId]:
        return self.plan.call("hypervisor", "vm_ids", self.inner.vm_ids)

    def is_migrating(self, vm: VmId) -> bool:
        return self.plan.call("hypervisor", "is_migrating",
                              lambda: self.inner.is_migrating(vm), f"{vm}")

    def cdroms(self, vm: VmId) -> Mapping[DriveName, str | None]:
        return self.plan.call("hypervisor", "cdroms", lambda: self.inner.cdroms(vm), f"{vm}")

    def cdrom(self, vm: VmId, drive: DriveName) -> str | None:
        return self.plan.call("hypervisor", "cdrom",
                              lambda: self.inner.cdrom(vm, drive), f"{vm} {drive}")

    def load(self, vm: VmId, drive: DriveName, media: Media) -> None:
        self.plan.call("hypervisor", "load", lambda: self.inner.load(vm, drive, media),
                       f"{vm} {drive} {media.disk_type.value}:{media.path}")

    def eject(self, vm: VmId, drive: DriveName) -> None:
        self.plan.call("hypervisor", "eject", lambda: self.inner.eject(vm, drive),
                       f"{vm} {drive}")


class FaultyVolumeActivator(VolumeActivator):
    def __init__(self, inner: VolumeActivator, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def prepare(self, volume: VolumeRef) -> Media:
        return self.plan.call("volumes", "prepare", lambda: self.inner.prepare(volume),
                              str(volume))

    def teardown(self, volume: VolumeRef) -> None:
        self.plan.call("volumes", "teardown", lambda: self.inner.teardown(volume), str(volume))

    def is_active(self, volume: VolumeRef) -> bool:
        return self.plan.call("volumes", "is_active", lambda: self.inner.is_active(volume),
                              str(volume))

    def resolve_path(self, path: str) -> Media:
        return self.plan.call("volumes", "resolve_path", lambda: self.inner.resolve_path(path),
                              path)


class FaultyMetadataRepository(MetadataRepository):
    def __init__(self, inner: MetadataRepository, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def read(self, vm: VmId, drive: DriveName) -> DriveEntries:
        return self.plan.call("metadata", "read", lambda: self.inner.read(vm, drive),
                              f"{vm} {drive}")

    def read_all(self, vm: VmId,
                 drives: Sequence[DriveName]) -> Mapping[DriveName, DriveEntries]:
        return self.plan.call("metadata", "read_all", lambda: self.inner.read_all(vm, drives),
                              f"{vm} {' '.join(map(str, drives))}")

    def write(self, vm: VmId, drive: DriveName, entries: Sequence[CdEntry]) -> None:
        summary = ", ".join(
            f"{e.state.value if e.state else 'none'}:{e.volume.volume_id if e.volume else 'empty'}"
            for e in entries)
        self.plan.call("metadata", "write", lambda: self.inner.write(vm, drive, entries),
                       f"{vm} {drive} [{summary}]")
