"""Real crashes: a changeCD killed with SIGKILL right before each port call in turn.

For each flow (insert, change, eject) and each call N, a child process runs the changeCD
with ``OVIRT_CDROM_CRASH_AT_CALL=N`` (SIGKILL), then a fresh process recovers the host.
Afterwards the VM is still running and the promises hold as seen from outside: the tray
and the metadata agree, no ``state`` marker remains, and no loop device is attached that
no VM holds. N runs until the change completes without reaching the crash point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import VmId, VolumeRef
from realvm import UNRELATED_METADATA, RealHost, loop_config, promise_violations

pytestmark = pytest.mark.libvirt

CHILD = Path(__file__).with_name("crash_child.py")
MAX_CALLS = 40


def new_volume() -> VolumeRef:
    return VolumeRef(*(str(uuid.uuid4()) for _ in range(4)))


def drive_spec(volume: VolumeRef | None) -> dict[str, str] | None:
    return None if volume is None else {"device": "cdrom", **volume.as_dict()}


def child_env(real: RealHost, crash_at: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OVIRT_CDROM_CONFIG", None)
    for key, value in loop_config(real).items():
        env[f"OVIRT_CDROM_{key.upper()}"] = value
    if crash_at is not None:
        env.update(OVIRT_CDROM_FAULT_INJECTION="on", OVIRT_CDROM_CRASH_AT_CALL=str(crash_at),
                   OVIRT_CDROM_CRASH_ACTION="sigkill")
    return env


def run_child(real: RealHost, args: list[str], crash_at: int | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHILD), *args], env=child_env(real, crash_at),
                          capture_output=True, text=True, timeout=120, check=False)


def settle(real: RealHost, vm: VmId, volume: VolumeRef | None) -> None:
    """Bring the VM's tray to ``volume`` with an ordinary (in-process) changeCD."""
    api = build(loop_config(real)).core.api()
    assert api.changeCD(vm.value, {"iface": "sata", "index": "2",
                                   "drive_spec": drive_spec(volume)}) == {"vmList": {}}


FLOWS = {  # flow -> (what the tray holds before, what the change asks for)
    "insert": (None, "new"),
    "change": ("old", "new"),
    "eject": ("old", None),
}


@pytest.mark.parametrize("flow", list(FLOWS))
def test_sigkill_before_each_port_call_then_recovery_keeps_the_promises(
        real_host: RealHost, flow: str) -> None:
    volumes = {"old": new_volume(), "new": new_volume()}
    for volume in volumes.values():
        real_host.add_volume(volume)
    vm = real_host.create_vm(metadata=UNRELATED_METADATA)
    before, after = (volumes.get(k) if k else None for k in FLOWS[flow])
    outcomes: dict[int, str] = {}
    failures: list[str] = []
    for crash_at in range(1, MAX_CALLS + 1):
        settle(real_host, vm, before)
        assert promise_violations(real_host, [vm]) == []
        proc = run_child(real_host, ["change", vm.value, json.dumps(drive_spec(after))],
                         crash_at)
        if proc.returncode == 0:
            answer: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])["answer"]
            assert answer == {"vmList": {}}, answer
            outcomes[crash_at] = "completed"
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        outcomes[crash_at] = "killed"
        recovered = run_child(real_host, ["recover", vm.value])
        assert recovered.returncode == 0, recovered.stderr
        report = json.loads(recovered.stdout.splitlines()[-1])
        found = promise_violations(real_host, [vm])
        if not report["clean"] or found:
            failures.append(f"crash before call {crash_at}: recovery {report}, {found}")
    else:
        pytest.fail(f"the {flow} never completed within {MAX_CALLS} calls")
    killed = [n for n, o in outcomes.items() if o == "killed"]
    print(f"{flow}: killed before calls {killed}, completed with crash point "
          f"{max(outcomes)}")
    assert len(killed) >= 4, outcomes  # a flow makes several port calls: all were hit
    assert failures == []
    assert real_host.is_running(vm)
