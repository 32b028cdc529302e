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
from ovirt_cdrom.adapters.vdsm_layout import block_path
from ovirt_cdrom.container import Application, build, load_config
from ovirt_cdrom.domain.errors import CdromError, GeneralException, vdsm_name
from ovirt_cdrom.domain.model import DiskType, Media, VmId, VolumeRef
from ovirt_cdrom.service import CdromService, DriveRecovery, RecoveryReport
from ovirt_cdrom.simulator.hostjson import host_json, markers
from ovirt_cdrom.simulator.scenario import Scenario, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer as the engine sees it: vdsm's code, its name, the message."""

    code: int
    vdsm_name: str
    message: str

    @classmethod
    def of(cls, err: CdromError) -> Failure:
        return cls(err.code, err.vdsm_name, err.message)

    @classmethod
    def answer(cls, answer: dict[str, Any]) -> Failure | None:
        """vdsm's answer: None for ``{"vmList": ...}``, else its ``{"code", "message"}``."""
        if "code" not in answer:
            return None
        return cls(answer["code"], vdsm_name(answer["code"]), answer["message"])


@dataclass(slots=True)
class StepOutcome:
    step: Step
    ok: bool
    injected: bool
    crashed: bool
    error: Failure | None
    calls: int                       # port calls the step made (a crashed call excluded)
    trace: list[TracedCall]
    recovered: list[DriveRecovery] | None = None  # recover steps only
    gone: list[VmId] = field(default_factory=list)  # recover steps: VMs gone meanwhile
    markers: list[str] = field(default_factory=list)  # drives it left with a marker
    after: dict[str, Any] | None = None  # the host after it (``record_after``)


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    host: MemoryHost
    baseline: dict[VmId, str]
    steps: list[StepOutcome] = field(default_factory=list)


class Simulation:
    """One scenario's host, container and service, stepped one step at a time."""

    def __init__(self, scenario: Scenario, apps: AppCache | None = None,
                 record_after: bool = False) -> None:
        self.scenario = scenario
        self.record_after = record_after
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
        self.plan.arm(step.fail, step.fail_effect, step.crash)
        error: Failure | None = None
        recovered: list[DriveRecovery] | None = None
        gone: list[VmId] = []
        crashed = False
        try:
            if step.op == "changeCD":
                error = Failure.answer(self.app.core.api().changeCD(
                    step.args.get("vmID"), step.args.get("cdromspec")))
            else:
                service: CdromService = self.app.core.service()
                try:
                    report = service.recover_all()
                except CdromError as err:
                    # The host's VMs could not even be listed: the step failed, the
                    # scenario goes on (an outcome, not an internal error).
                    log.info("Recovery failed: %s", err)
                    recovered, error = [], Failure.of(err)
                else:
                    recovered, gone, error = report.drives, report.gone, _failure(report)
        except SimulatedCrash:
            crashed = True
            log.info("Step %s crashed at %s", step.op, step.crash)
            self.restart()
            self._fresh = True
        calls = self.plan.calls - (1 if crashed else 0)
        outcome = StepOutcome(step, ok=not crashed and error is None,
                              injected=self.plan.injected, crashed=crashed, error=error,
                              calls=calls, trace=list(self.plan.trace), recovered=recovered,
                              gone=gone, markers=markers(self.host),
                              after=host_json(self.host, self.scenario.labels)
                              if self.record_after else None)
        self.plan.arm()
        self.run.steps.append(outcome)
        return outcome


# The simulator's own settings: an in-memory host with fault injection, crashes raised in
# process, the injection armed per step. Every other setting comes from the configuration
# (defaults, OVIRT_CDROM_CONFIG, OVIRT_CDROM_<KEY>), a scenario's own keys winning.
SIMULATOR_SETTINGS = {"adapters": "memory", "fault_injection": "on", "crash_action": "raise",
                      "fail_at": None, "fail_at_call": None, "crash_at": None,
                      "crash_at_call": None, "fail_effect": "before"}


def check_configuration() -> None:
    """Raise ConfigError now if the configuration the runs would use has a bad value."""
    load_config(SIMULATOR_SETTINGS)


class AppCache:
    """One configured container per metadata encoding, its singletons reset per scenario.

    Building a container copies its whole provider graph: 5.4 ms, against 0.7 ms to reset
    its singletons, which gives the same fresh host, adapters, fault plan and service. For
    the 500 scenarios tests/simulator/test_command.py times, that is 2.7 s against 0.35 s.
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


def run(scenario: Scenario, apps: AppCache | None = None,
        record_after: bool = False) -> ScenarioRun:
    """Run every step of ``scenario``; return the host and each step's outcome.

    Pass one ``apps`` for many scenarios to reuse the containers (see :class:`AppCache`);
    ``record_after`` keeps the host's state after each step (``--trace``).
    """
    sim = Simulation(scenario, apps, record_after)
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
                host.add_volume(d.loaded, active=True)  # a CD in a tray is active
                media: Media | None = Media(block_path(d.loaded), DiskType.BLOCK)
            else:
                media = None if d.loaded is None else Media(d.loaded, DiskType.FILE)
            host.add_drive(vm.id, d.iface, d.index, media)
            state = d.state
            if state is None:
                if metadata_xml.has_elements(memory_vm.metadata.element(), d.name):
                    continue  # the entries metadata_xml holds for it, kept as written
                state = d.default_state()
            memory_vm.metadata.write(d.name, state, encoding)


def _failure(report: RecoveryReport) -> Failure | None:
    """A recovery's outcome as one error: the first met, or the drives left to retry."""
    if report.clean:
        return None
    for err in report.vm_errors.values():
        return Failure.of(err)
    for d in report.drives:
        if d.error is not None:
            return Failure.of(d.error)
    left = ", ".join(f"{d.vm}/{d.drive}" for d in report.drives if not d.clean)
    return Failure.of(GeneralException(
        f"recovery could not clean up {left}; the next recovery retries"))
