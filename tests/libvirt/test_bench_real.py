"""``ovirt-cdrom bench --real`` on a real QEMU VM: its keys, and a bare change that really
changes the CD (the run checks the VM after each round and fails otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ovirt_cdrom.bench.real import domain_type

pytestmark = pytest.mark.libvirt

REAL_KEYS = {"libvirt_change_ms", "libvirt_bare_ms", "libvirt_overhead_ratio",
             "libvirt_only_ms", "storage_ms"}


def test_real_bench_reports_the_change_the_bare_change_and_its_parts(libvirt_uri: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ovirt_cdrom", "bench", "--quick", "--real",
                           "--json"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= REAL_KEYS
    for key in REAL_KEYS:
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["libvirt_overhead_ratio"] == pytest.approx(
        report["libvirt_change_ms"] / report["libvirt_bare_ms"])
    lv = report["libvirt"]
    assert lv["domain_type"] == domain_type()  # the VM the figures come from
    # The bare change is the minimal sequence, written out; the core's calls are counted.
    assert lv["bare_calls"].count("setMetadata") == 2
    assert lv["bare_calls"].count("updateDeviceFlags") == 1
    assert lv["change_calls"]["setMetadata"] == 2
    assert lv["change_calls"]["updateDeviceFlags"] == 1
    assert "lookupByUUIDString" not in lv["change_calls"]  # the kept handle
    # Its two parts are timed within each bare change: neither exceeds the whole.
    assert lv["libvirt_only_ms"]["min"] < lv["bare_ms"]["max"]
    assert lv["storage_ms"]["min"] < lv["bare_ms"]["max"]
    assert report["libvirt_only_ms"] + report["storage_ms"] == pytest.approx(
        report["libvirt_bare_ms"], rel=0.25)


def test_domain_type_is_kvm_only_where_qemu_can_open_the_device(tmp_path: Path) -> None:
    assert domain_type(str(tmp_path / "missing")) == "qemu"
    regular = tmp_path / "kvm"
    regular.write_bytes(b"")
    regular.chmod(0o666)
    assert domain_type(str(regular)) == "qemu"  # not a character device
    assert domain_type("/dev/null") == "kvm"  # a device anyone may open (0666)
