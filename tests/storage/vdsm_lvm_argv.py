"""Print the LVM argv vdsm 4.50 runs for what our LVM activator does (not a test).

Runs vdsm's own ``lib/vdsm/storage/lvm.py`` with a recording ``LVMRunner`` in place of
its ``sudo lvm`` runner, and prints one JSON object: operation -> list of argv. The
figures in docs/block-storage.md and in tests/storage/test_lvm_commands.py (VDSM_ARGV)
come from it. Needs an unpacked vdsm tree whose ``lib/vdsm/common`` was generated
(see ../shared/vdsm/README.md: ``./autogen.sh --system && make -C lib/vdsm/common``)::

    python3 tests/storage/vdsm_lvm_argv.py /tmp/vdsm-lvm/vdsm

vdsm's module imports with Debian's python3 and no other package. Multipath devices and
"is the LV active" (a ``/dev/<vg>/<lv>`` node) are answered here, not read from the host.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

SD = "22222222-2222-2222-2222-222222222222"
VOL = "44444444-4444-4444-4444-444444444444"
PVS = ["/dev/mapper/36001405a", "/dev/mapper/36001405b"]
MULTIPATH = [*PVS, "/dev/mapper/36001405c"]


class Recorder:
    """vdsm's LVMRunner interface: run(cmd) -> stdout lines, or raise LVMCommandError."""

    def __init__(self, exception: Any) -> None:
        self.exception = exception
        self.calls: list[list[str]] = []
        self.failures = 0
        self.out: list[str] = []

    def run(self, cmd: list[str]) -> list[str]:
        self.calls.append(list(cmd))
        if self.failures:
            self.failures -= 1
            raise self.exception.LVMCommandError(
                cmd, 5, [], [f'  Volume group "{SD}" not found'])
        return self.out


def record(vdsm_tree: Path) -> dict[str, list[list[str]]]:
    sys.path.insert(0, str(vdsm_tree / "lib"))
    lvm: Any = importlib.import_module("vdsm.storage.lvm")
    se: Any = importlib.import_module("vdsm.storage.exception")
    lvm.multipath.getMPDevNamesIter = lambda: iter(MULTIPATH)
    active = {"lv": False}
    lvm._isLVActive = lambda vg, lv: active["lv"]

    # What vgs prints for the domain: one line per PV.
    fields = ["uuid", SD, "wz--n-", "1", "1", "1", "1", "1", "RHAT_storage_domain",
              "1", "1", "1", "2"]
    vgs_out = ["|".join([*fields, pv]) for pv in PVS]

    def fresh(vg_known: bool) -> Recorder:
        recorder = Recorder(se)
        lvm._lvminfo = lvm.LVMCache(recorder)
        if vg_known:  # what getVG leaves in vdsm's cache
            recorder.out = vgs_out
            lvm._lvminfo.getVg(SD)
            recorder.calls.clear()
            recorder.out = []
        return recorder

    found: dict[str, list[list[str]]] = {}
    for known in (True, False):
        key = "known" if known else "unknown"
        recorder, active["lv"] = fresh(known), False
        lvm.activateLVs(SD, [VOL])
        found[f"prepare an inactive LV (VG {key})"] = recorder.calls
        recorder, active["lv"] = fresh(known), True
        lvm.activateLVs(SD, [VOL])
        found[f"prepare an active LV (VG {key})"] = recorder.calls
        recorder, active["lv"] = fresh(known), True
        lvm.deactivateLVs(SD, [VOL])
        found[f"teardown (VG {key})"] = recorder.calls
        recorder = fresh(known)
        lvm.getAllLVs(SD)
        found[f"list the LVs (VG {key})"] = recorder.calls
    recorder = fresh(False)
    recorder.out = vgs_out
    lvm.getVG(SD)
    found["find the VG's PVs"] = recorder.calls
    recorder, active["lv"] = fresh(True), False
    recorder.failures = 1
    lvm.activateLVs(SD, [VOL])
    found["retry (activation failing on the VG's PVs)"] = recorder.calls
    return found


if __name__ == "__main__":
    json.dump(record(Path(sys.argv[1])), sys.stdout, indent=1)
    print()
