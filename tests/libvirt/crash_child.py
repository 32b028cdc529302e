"""Run one changeCD, or a host recovery, in a process of its own (for the crash tests).

Configured entirely by the environment (``OVIRT_CDROM_*``), as the product is in production:
with ``OVIRT_CDROM_CRASH_AT_CALL=N`` and ``OVIRT_CDROM_CRASH_ACTION=sigkill`` the process
kills itself with SIGKILL right before its N-th port call.

    python crash_child.py change <vm-uuid> <drive_spec JSON or null>
    python crash_child.py recover <vm-uuid>...
Prints one JSON line: the changeCD answer, or the recovery's cleanliness. Recovery looks
only at the VMs named: another test run may share the libvirtd, and its VMs are its own.
"""

from __future__ import annotations

import json
import sys

from ovirt_cdrom.container import build
from ovirt_cdrom.domain.model import VmId


def main(argv: list[str]) -> int:
    app = build()
    if argv[0] == "change":
        answer = app.core.api().changeCD(argv[1], {"iface": "sata", "index": "2",
                                                   "drive_spec": json.loads(argv[2])})
        print(json.dumps({"answer": answer, "calls": _calls(app)}))
        return 0
    report = app.core.service().recover(*(VmId.parse(vm) for vm in argv[1:]))
    print(json.dumps({"clean": report.clean,
                      "errors": [str(d.error) for d in report.drives if d.error]
                      + [str(e) for e in report.vm_errors.values()]}))
    return 0


def _calls(app: object) -> int | None:
    plan = getattr(app, "fault_plan", None)
    return plan().calls if plan is not None and callable(plan) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
