"""Run one changeCD, or a recovery of some VMs, in a process of its own (the crash tests).

Configured entirely by the environment (``OVIRT_CDROM_*``), as the product is in production:
with ``OVIRT_CDROM_FAULT_INJECTION=on``, ``OVIRT_CDROM_CRASH_AT=hypervisor.load:1`` and
``OVIRT_CDROM_CRASH_ACTION=sigkill`` the process kills itself with SIGKILL right before the
first ``hypervisor.load``.

    python crash_child.py change <vm-uuid> <drive_spec JSON or null>
    python crash_child.py recover <vm-uuid>...

Prints one JSON line: the changeCD answer with the named points of its port calls
(``<port>.<method>:<occurrence>``, with fault injection on), or the recovery's cleanliness.
Recovery looks only at the VMs named: another test run may share the libvirtd, and its VMs
are its own.
"""

from __future__ import annotations

import json
import sys

from ovirt_cdrom.adapters.faults import FaultPlan
from ovirt_cdrom.container import Application, build
from ovirt_cdrom.domain.model import VmId


def main(argv: list[str]) -> int:
    app = build()
    if argv[0] == "change":
        answer = app.core.api().changeCD(argv[1], {"iface": "sata", "index": "2",
                                                   "drive_spec": json.loads(argv[2])})
        print(json.dumps({"answer": answer, "calls": _points(app)}))
        return 0
    report = app.core.service().recover(*(VmId.parse(vm) for vm in argv[1:]))
    print(json.dumps({"clean": report.clean,
                      "cases": [d.case for d in report.drives if d.case],
                      "errors": [str(d.error) for d in report.drives if d.error]
                      + [str(e) for e in report.vm_errors.values()]}))
    return 0


def _points(app: Application) -> list[str]:
    """The named point of each port call the run made (none without fault injection)."""
    if app.config.fault_injection() != "on":
        return []
    plan: FaultPlan = app.fault_plan()
    return [f"{c.call}:{c.occurrence}" for c in plan.trace]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
