"""``ovirt-cdrom bench``: the command runs and its report keeps its public keys.

Speed is not checked here (the targets live in the benchmark's own output); the sizes are
tiny (hidden ``--quick``), except the 10,000-VM recovery the public key names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.bench import memory
from ovirt_cdrom.domain.model import DriveName
from ovirt_cdrom.domain.state import Empty, Loaded

PUBLIC_KEYS = {"memory_change_per_s", "memory_insert_per_s", "memory_eject_per_s",
               "memory_recover_10k_s", "calls_per_flow"}
REAL_KEYS = {"libvirt_change_ms", "libvirt_bare_ms", "libvirt_overhead_ratio"}
CALL_KEYS = {"metadata_writes", "media_updates", "reads"}


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovirt_cdrom", "bench", "--quick", *args],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = bench("--json")
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def test_json_report_has_every_public_key_with_its_type(report: dict[str, Any]) -> None:
    assert set(report) >= PUBLIC_KEYS
    assert not REAL_KEYS & set(report), "libvirt figures appear only with --real"
    for key in PUBLIC_KEYS - {"calls_per_flow"}:
        assert isinstance(report[key], float), key
        assert report[key] > 0, key


def test_calls_per_flow_counts_insert_eject_and_change(report: dict[str, Any]) -> None:
    calls = report["calls_per_flow"]
    assert set(calls) == {"insert", "eject", "change"}
    for flow, counts in calls.items():
        assert set(counts) == CALL_KEYS, flow
        assert all(type(n) is int for n in counts.values()), flow


def test_calls_per_flow_are_counted_from_the_calls_made(report: dict[str, Any]) -> None:
    """The counts agree with the trace of port calls the flow made."""
    for flow, trace in report["calls_per_flow_trace"].items():
        counts = report["calls_per_flow"][flow]
        assert counts["metadata_writes"] == trace.count("metadata.write")
        assert counts["media_updates"] == sum(
            trace.count(c) for c in ("hypervisor.load", "hypervisor.eject"))
        assert counts["reads"] == sum(trace.count(c) for c in memory.READ_CALLS)


def test_readable_report_states_noise_and_recovery_sizes() -> None:
    done = bench()
    assert done.returncode == 0, done.stderr
    assert "flows/s" in done.stdout
    assert "10,000 VMs" in done.stdout
    assert ".." in done.stdout  # min..max of the runs


def test_recovery_benchmark_host_recovers_clean() -> None:
    """The recovery benchmark checks its own outcome: half the drives change, none fail,
    and the host keeps the promises (the product's checker)."""
    host, service, leftovers = memory.recovery_host(40)
    report = service.recover_all()
    assert report.clean
    assert leftovers == 20
    assert sum(d.changed for d in report.drives) == leftovers
    drive = DriveName("sdc")
    for vm in host.vms.values():
        assert isinstance(host.vm(vm.id).metadata.read(drive), Empty | Loaded)
    assert violations(host) == []
