"""Fault and crash injection as port decorators, for any adapter set: the one mechanism.

Each decorator wraps one port and sends every call through a shared :class:`FaultPlan`.
A call is named ``<port>.<method>`` (``hypervisor.load``, ``volumes.prepare``,
``metadata.write``...) and numbered within the step, reads included. A plan is armed per
step with where to inject, by name (:class:`At` ``("hypervisor.load", occurrence=1)``) or by
number (``At(number=6)``):

* a failure raises an error typed for that port, ``before`` the call (it has no effect) or
  ``after`` it (it took effect, then failed, as a timeout does); several at once for a step
  whose operation and compensation both fail;
* a crash runs the plan's ``crash`` action just before the call. In process (the
  simulator, the tests) it raises :class:`SimulatedCrash`, a ``BaseException`` that no
  ``except Exception`` or flow compensation catches, so the service dies as a killed
  process would; for real crash tests it is ``os.kill(os.getpid(), SIGKILL)``.

Hooks run before or after named calls (``"*"``: any), so that tests can interleave
operations at exact points without sleeping. Every call is recorded in ``plan.trace``
(which the simulator shows with ``--trace``). The core knows nothing of this: the container
wires the decorators around the adapters it was going to use anyway.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections import Counter
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
from ovirt_cdrom.domain.model import DriveName, Media, Tray, VmId, VolumeRef
from ovirt_cdrom.domain.state import DriveState
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator

log = logging.getLogger(__name__)
T = TypeVar("T")
Effect = Literal["before", "after"]
Hook = Callable[[str], None]

# Every call the decorators make, by port: the names a plan may use.
CALLS: Mapping[str, tuple[str, ...]] = {
    "hypervisor": ("vm_ids", "is_migrating", "cdroms", "cdrom", "load", "eject"),
    "volumes": ("prepare", "teardown", "is_active", "resolve_path"),
    "metadata": ("read", "read_all", "write"),
}
CALL_NAMES = tuple(f"{port}.{method}" for port, methods in CALLS.items() for method in methods)


class SimulatedCrash(BaseException):
    """The process died here. Deliberately not an ``Exception``."""


def raise_crash() -> NoReturn:
    raise SimulatedCrash("crash injected")


def kill_self() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise SimulatedCrash("SIGKILL did not stop the process")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class At:
    """A point of a step: its ``number``-th port call, or the ``occurrence``-th call of
    ``call`` (``<port>.<method>``)."""

    call: str | None = None
    occurrence: int = 1
    number: int | None = None

    def __post_init__(self) -> None:
        if (self.call is None) == (self.number is None):
            raise ValueError("a point names a call or a number, not both")
        if self.call is not None and self.call not in CALL_NAMES:
            raise ValueError(f"unknown call {self.call!r}; expected one of "
                             f"{', '.join(CALL_NAMES)}")
        if self.occurrence < 1 or (self.number is not None and self.number < 1):
            raise ValueError("calls are counted from 1")

    @classmethod
    def parse(cls, text: str) -> At:
        """``"6"`` (a number), ``"hypervisor.load"`` or ``"metadata.write:2"``."""
        text = text.strip()
        if text.isdigit():
            return cls(number=int(text))
        match = re.fullmatch(r"([a-z_]+\.[a-z_]+)(?::(\d+))?", text)
        if match is None:
            raise ValueError(f"not a call point: {text!r} (a number, or <port>.<method>"
                             "[:<occurrence>])")
        return cls(match[1], int(match[2] or 1))

    def hits(self, number: int, name: str, occurrence: int) -> bool:
        if self.number is not None:
            return number == self.number
        return name == self.call and occurrence == self.occurrence

    def __str__(self) -> str:
        if self.number is not None:
            return f"call {self.number}"
        return f"{self.call} #{self.occurrence}"


@dataclass(frozen=True, slots=True)
class TracedCall:
    number: int
    port: str
    method: str
    args: str
    outcome: str  # "ok", "failed: ...", "injected failure (before|after): ...", "crash"
    occurrence: int = 1  # which call of this name within the step

    @property
    def call(self) -> str:
        return f"{self.port}.{self.method}"


def _injected_error(port: str, method: str, effect: Effect) -> CdromError:
    what = f"injected failure of {port}.{method}"
    if port == "hypervisor":
        return HypervisorTimeout(what) if effect == "after" else HypervisorError(what)
    if port == "volumes":
        return StorageError(what)
    return MetadataError(what)


@dataclass
class FaultPlan:
    """Where the current step fails or crashes, and what its calls were."""

    crash: Callable[[], NoReturn] = raise_crash
    failures: dict[At, Effect] = field(default_factory=dict)
    crash_at: At | None = None
    calls: int = 0
    injected: bool = False
    trace: list[TracedCall] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter, repr=False)
    _before: list[tuple[str, Hook]] = field(default_factory=list, repr=False)
    _after: list[tuple[str, Hook]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arm(self, fail: At | None = None, effect: Effect = "before", crash: At | None = None,
            failures: Mapping[At, Effect] | None = None) -> None:
        """Arm the plan for the next step: counts restart at 1, the trace is emptied."""
        with self._lock:
            self.failures = dict(failures or {})
            if fail is not None:
                self.failures[fail] = effect
            self.crash_at = crash
            self.calls, self.injected = 0, False
            self._seen = Counter()
            self.trace = []

    def begin_step(self) -> None:
        """A new step with the injection armed so far: counts restart at 1."""
        with self._lock:
            self.calls, self.injected = 0, False
            self._seen = Counter()
            self.trace = []

    def disarm(self) -> None:
        """No injection for the next steps (the trace stays)."""
        with self._lock:
            self.failures = {}
            self.crash_at = None

    def before(self, call: str, hook: Hook) -> None:
        """Run ``hook(name)`` before each call named ``call`` (``"*"``: every call)."""
        with self._lock:
            self._before.append((call, hook))

    def after(self, call: str, hook: Hook) -> None:
        """Run ``hook(name)`` after each call named ``call`` has done its work, before its
        caller sees the answer."""
        with self._lock:
            self._after.append((call, hook))

    def clear_hooks(self) -> None:
        with self._lock:
            self._before.clear()
            self._after.clear()

    def call(self, port: str, method: str, fn: Callable[[], T], args: str = "") -> T:
        name = f"{port}.{method}"
        with self._lock:
            self.calls += 1
            self._seen[name] += 1
            number, occurrence = self.calls, self._seen[name]
            crash = self.crash_at is not None and self.crash_at.hits(number, name, occurrence)
            effect = next((e for at, e in self.failures.items()
                           if at.hits(number, name, occurrence)), None)
            if crash or effect is not None:
                self.injected = True
            before = [h for c, h in self._before if c in (name, "*")]
            after = [h for c, h in self._after if c in (name, "*")]
        for hook in before:
            hook(name)
        if crash:
            self._record(TracedCall(number, port, method, args, "crash", occurrence))
            self.crash()
        if effect == "before":
            err = _injected_error(port, method, "before")
            self._record(TracedCall(number, port, method, args,
                                    f"injected failure (before): {err}", occurrence))
            raise err
        try:
            result = fn()
        except CdromError as failure:
            self._record(TracedCall(number, port, method, args, f"failed: {failure}",
                                    occurrence))
            raise
        for hook in after:
            hook(name)
        if effect == "after":
            late = _injected_error(port, method, "after")
            self._record(TracedCall(number, port, method, args,
                                    f"injected failure (after): {late}", occurrence))
            raise late
        self._record(TracedCall(number, port, method, args, "ok", occurrence))
        return result

    def _record(self, call: TracedCall) -> None:
        log.debug("call %d %s(%s): %s", call.number, call.call, call.args, call.outcome)
        with self._lock:
            self.trace.append(call)


class FaultyHypervisor(Hypervisor):
    def __init__(self, inner: Hypervisor, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def vm_ids(self) -> list[VmId]:
        return self.plan.call("hypervisor", "vm_ids", self.inner.vm_ids)

    def is_migrating(self, vm: VmId) -> bool:
        return self.plan.call("hypervisor", "is_migrating",
                              lambda: self.inner.is_migrating(vm), f"{vm}")

    def cdroms(self, vm: VmId) -> Mapping[DriveName, Tray]:
        return self.plan.call("hypervisor", "cdroms", lambda: self.inner.cdroms(vm), f"{vm}")

    def cdrom(self, vm: VmId, drive: DriveName) -> Tray:
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

    def read(self, vm: VmId, drive: DriveName) -> DriveState:
        return self.plan.call("metadata", "read", lambda: self.inner.read(vm, drive),
                              f"{vm} {drive}")

    def read_all(self, vm: VmId, drives: Sequence[DriveName]) -> Mapping[DriveName, DriveState]:
        return self.plan.call("metadata", "read_all", lambda: self.inner.read_all(vm, drives),
                              f"{vm} {' '.join(map(str, drives))}")

    def write(self, vm: VmId, drive: DriveName, state: DriveState) -> None:
        self.plan.call("metadata", "write", lambda: self.inner.write(vm, drive, state),
                       f"{vm} {drive} [{state}]")
