"""Run a scenario: set up an in-memory host, run each step through the real core.

The host is built from the scenario; the ports are wrapped by the fault-injection
decorators the container wires (``fault_injection: on``), and the shared plan is armed per
step. A crash (``SimulatedCrash``) kills the service; the host survives, and the next step
runs on a fresh service, as after a restart. ``recover`` always runs on a fresh service:
that is what happens at host start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import FaultPlan, SimulatedCrash, TracedCall
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.adapters.memory.invariants import fingerprints
from ovirt_cdrom.container import Application, build, load_config
from ovirt_cdrom.domain.errors import CdromError, GeneralException
from ovirt_cdrom.domain.model import (
    DiskType,
    VmId,
    VolumeRef,
    block_volume_path,
)
from ovirt_cdrom.service import CdromService, RecoveryReport
from ovirt_cdrom.simulator.scenario import Scenario, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriveRecovered:
    vm: str
    drive: str
    case: str | None       # the design's recovery row (or "converge"); None: nothing to do
    design: str | None
    changed: bool
    clean: bool
    error: CdromError | None


@dataclass(slots=True)
class StepOutcome:
    step: Step
    ok: bool
    injected: bool
    crashed: bool
    error: CdromError | None
    calls: int                       # port calls the step made (a crashed call excluded)
    trace: list[TracedCall]
    recovered: list[DriveRecovered] | None = None  # recover steps only


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    host: MemoryHost
    baseline: dict[VmId, str]
    steps: list[StepOutcome] = field(default_factory=list)


class Simulation:
    """One scenario's host, container and service, stepped one step at a time."""

    def __init__(self, scenario: Scenario, apps: AppCache | None = None) -> None:
        self.scenario = scenario
        self.app = (apps or AppCache()).fresh(scenario.metadata_encoding)
        self.host: MemoryHost = self.app.memory.host()
        self.plan: FaultPlan = self.app.fault_plan()
        self.encoding = metadata_xml.Encoding.parse(self.app.config.metadata_encoding())
        _set_up(self.host, scenario, self.encoding)
        self.run = ScenarioRun(scenario, self.host, fingerprints(self.host))
        self._fresh = True

    def restart(self) -> None:
        """The process died or the host started: a fresh service over the same host."""
        core: Any = self.app.core
        core.api.reset()
        core.service.reset()

    def step(self, step: Step) -> StepOutcome:
        if step.op == "recover" and not self._fresh:
            self.restart()
        self._fresh = False
        self.plan.reset(step.fail_at_call, step.fail_effect, step.crash_at_call)
        error: CdromError | None = None
        recovered: list[DriveRecovered] | None = None
        crashed = False
        try:
            if step.op == "changeCD":
                error = self.app.core.api().change_cd(step.args.get("vmID"),
                                                      step.args.get("cdromspec"))
            else:
                service: CdromService = self.app.core.service()
                try:
                    report = service.recover_all()
                except CdromError as err:
                    # The host's VMs could not even be listed: the step failed, the
                    # scenario goes on (an outcome, not an internal error).
                    log.info("Recovery failed: %s", err)
                    recovered, error = [], err
                else:
                    recovered, error = _recovered(report)
        except SimulatedCrash:
            crashed = True
            log.info("Step %s crashed at call %s", step.op, step.crash_at_call)
            self.restart()
            self._fresh = True
        calls = self.plan.calls - (1 if crashed else 0)
        outcome = StepOutcome(step, ok=not crashed and error is None,
                              injected=self.plan.injected, crashed=crashed, error=error,
                              calls=calls, trace=list(self.plan.trace), recovered=recovered)
        self.plan.reset()
        self.run.steps.append(outcome)
        return outcome


# The simulator's own settings: an in-memory host with fault injection, crashes raised in
# process, the injection armed per step. Every other setting comes from the configuration
# (defaults, OVIRT_CDROM_CONFIG, OVIRT_CDROM_<KEY>), a scenario's own keys winning.
SIMULATOR_SETTINGS = {"adapters": "memory", "fault_injection": "on", "crash_action": "raise",
                      "fail_at_call": None, "crash_at_call": None, "fail_effect": "before"}


def check_configuration() -> None:
    """Raise ConfigError now if the configuration the runs would use has a bad value."""
    load_config(SIMULATOR_SETTINGS)


class AppCache:
    """One configured container per metadata encoding, its singletons reset per scenario.

    Building a container copies its whole provider graph (milliseconds); resetting its
    singletons gives the same fresh host, adapters, fault plan and service for far less, so
    that hundreds of scenarios in one file run in a few seconds.
    """

    def __init__(self) -> None:
        self._apps: dict[metadata_xml.Encoding | None, Application] = {}

    def fresh(self, encoding: metadata_xml.Encoding | None) -> Application:
        """A fresh application; ``encoding`` None: the configuration's."""
        app = self._apps.get(encoding)
        if app is None:
            own = {} if encoding is None else {"metadata_encoding": encoding.value}
            app = build({**own, **SIMULATOR_SETTINGS})
            self._apps[encoding] = app
        else:
            app.reset_singletons()
        return app


def run(scenario: Scenario, apps: AppCache | None = None) -> ScenarioRun:
    """Run every step of ``scenario``; return the host and each step's outcome.

    Pass one ``apps`` for many scenarios to reuse the containers (see :class:`AppCache`).
    """
    sim = Simulation(scenario, apps)
    for step in scenario.steps:
        sim.step(step)
    return sim.run


def _set_up(host: MemoryHost, scenario: Scenario, encoding: metadata_xml.Encoding) -> None:
    host.files = set(scenario.files) if scenario.files is not None else None
    for volume, active in scenario.volumes:
        host.add_volume(volume, active)
    for vm in scenario.vms:
        memory_vm = host.add_vm(vm.id, migrating=vm.migrating, metadata=vm.metadata_xml)
        for d in vm.drives:
            if isinstance(d.loaded, VolumeRef):
                host.add_volume(d.loaded, active=True)
                host.add_drive(vm.id, d.iface, d.index, block_volume_path(d.loaded),
                               DiskType.BLOCK)
            else:
                host.add_drive(vm.id, d.iface, d.index, d.loaded, DiskType.FILE)
            entries = d.metadata
            if entries is None:
                try:
                    existing = metadata_xml.read_entries(memory_vm.metadata, d.name)
                except CdromError:
                    continue  # hostile metadata_xml: kept as the scenario wrote it
                if existing:
                    continue
                entries = d.default_entries()
            metadata_xml.write_entries(memory_vm.metadata, d.name, entries, encoding)


def _recovered(report: RecoveryReport) -> tuple[list[DriveRecovered], CdromError | None]:
    drives = [DriveRecovered(str(d.vm), str(d.drive), d.case, d.design, d.changed, d.clean,
                             d.error) for d in report.drives]
    if report.clean:
        return drives, None
    for err in report.vm_errors.values():
        return drives, err
    for r in drives:
        if r.error is not None:
            return drives, r.error
    left = ", ".join(f"{r.vm}/{r.drive}" for r in drives if not r.clean)
    return drives, GeneralException(
        f"recovery could not clean up {left}; the next recovery retries")
