"""Real crashes: a changeCD killed with SIGKILL right before each of its port calls in turn.

For each flow (insert, change, eject) a child process first runs the changeCD cleanly with
fault injection on, which names each of its port calls (``hypervisor.load:1``,
``metadata.write:2``...). Then, for each named call, a child runs the same changeCD from
the same state with ``OVIRT_CDROM_CRASH_AT=<that call>`` (SIGKILL), and a fresh process
recovers the VM. The product's checker judges the host from outside: right after the
crash, what holds at every instant (the VM holds no inactive volume, the metadata that is
not ours is as it was); after the recovery, everything (the VM still runs, the tray and
the metadata agree, no ``state`` marker remains, none of the test's volumes is active
that the VM does not hold).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import VmId, VolumeRef
from realvm import UNRELATED_METADATA, RealHost, loop_config
from rig import spec, volume

pytestmark = pytest.mark.libvirt

CHILD = Path(__file__).with_name("crash_child.py")

FLOWS = {  # flow -> (what the tray holds before, what the change asks for)
    "insert": (None, "new"),
    "change": ("old", "new"),
    "eject": ("old", None),
}
# The calls each flow must make (the sweep covers at least these; their order and the
# reads around them are the flows' business).
MUST_CALL = {
    "insert": {"metadata.write:1", "volumes.prepare:1", "hypervisor.load:1",
               "metadata.write:2"},
    "change": {"metadata.write:1", "volumes.prepare:1", "hypervisor.load:1",
               "volumes.teardown:1", "metadata.write:2"},
    "eject": {"metadata.write:1", "hypervisor.eject:1", "volumes.teardown:1",
              "metadata.write:2"},
}


def drive_spec(target: VolumeRef | None) -> dict[str, Any] | None:
    drive: dict[str, Any] | None = spec(target)["drive_spec"]
    return drive


def child_env(real: RealHost, crash_at: str | None, faults: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVIRT_CDROM_")}
    for key, value in loop_config(real).items():
        env[f"OVIRT_CDROM_{key.upper()}"] = value
    if faults:
        env["OVIRT_CDROM_FAULT_INJECTION"] = "on"
    if crash_at is not None:
        env.update(OVIRT_CDROM_CRASH_AT=crash_at, OVIRT_CDROM_CRASH_ACTION="sigkill")
    return env


def run_child(real: RealHost, args: list[str], crash_at: str | None = None,
              faults: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHILD), *args],
                          env=child_env(real, crash_at, faults or crash_at is not None),
                          capture_output=True, text=True, timeout=120, check=False)


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return found


def bring(real: RealHost, vm: VmId, target: VolumeRef | None) -> None:
    """Bring the VM's tray to ``target`` with an ordinary (in-process) changeCD."""
    api = build(loop_config(real), environ={}).core.api()
    assert api.changeCD(vm.value, spec(target)) == {"vmList": {}}


@pytest.mark.parametrize("flow", list(FLOWS))
def test_sigkill_before_each_named_port_call_then_recovery_keeps_the_promises(
        real_host: RealHost, flow: str) -> None:
    volumes = {name: volume(f"crash-{name}") for name in ("old", "new")}
    for v in volumes.values():
        real_host.add_volume(v)
    vm = real_host.create_vm(metadata=UNRELATED_METADATA)
    real_host.settle(vm)
    before, after = (volumes[k] if k else None for k in FLOWS[flow])
    change = ["change", vm.value, json.dumps(drive_spec(after))]

    # The clean run names the calls to crash at.
    bring(real_host, vm, before)
    clean = last_json(run_child(real_host, change, faults=True))
    assert clean["answer"] == {"vmList": {}}
    points: list[str] = clean["calls"]
    assert MUST_CALL[flow] <= set(points), points
    assert real_host.violations(vm) == []

    cases: dict[str, list[str]] = {}
    failures: list[str] = []
    for point in points:
        bring(real_host, vm, before)
        assert real_host.violations(vm) == [], f"before crashing at {point}"
        proc = run_child(real_host, change, crash_at=point)
        assert proc.returncode == -signal.SIGKILL, (
            f"{point} was not reached: rc {proc.returncode}, {proc.stdout} {proc.stderr}")
        # What holds at every instant, a crash included: the VM holds no inactive volume,
        # the metadata that is not ours is as it was.
        found = real_host.violations(vm, settled=False)
        if found:
            failures.append(f"right after a crash before {point}: {found}")
        report = last_json(run_child(real_host, ["recover", vm.value]))
        cases[point] = report["cases"]
        found = real_host.violations(vm)
        if not report["clean"] or found:
            failures.append(f"crash before {point}: recovery {report}, {found}")
    print(f"\n{flow}: killed before each of {len(points)} calls; recovery per point: "
          + ", ".join(f"{p} -> {'/'.join(c) or 'nothing'}" for p, c in cases.items()))
    assert failures == []
    assert real_host.is_running(vm)
