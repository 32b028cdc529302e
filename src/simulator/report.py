"""The simulator's reports: the JSON contract (``--json``) and a readable rich rendering.

JSON keys are a public contract (see ``docs/simulator.md``): ``name``, ``steps[]`` (``op``,
``ok``, ``injected``, ``crashed``, ``error`` {``code``, ``name``, ``message``} or null) and
``final`` (``vms`` {VMID: {``drives`` {NAME: {``source``, ``metadata`` [{``state``,
``pdiv``}]}}, ``metadata_xml``}}, ``volumes`` [{PDIV, ``active``}]). Extra keys are added
beside them, never instead of them.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import TracedCall
from ovirt_cdrom.adapters.memory import MemoryHost
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.domain.errors import CdromError, InvalidMetadata
from ovirt_cdrom.domain.state import DriveState, Unreadable
from ovirt_cdrom.service import DriveRecovery
from ovirt_cdrom.simulator.runner import Failure, ScenarioRun, StepOutcome
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

# --- JSON ----------------------------------------------------------------------------------


def error_json(err: Failure | CdromError | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {"code": err.code, "name": err.vdsm_name, "message": err.message}


def entries_json(state: DriveState) -> list[dict[str, Any]]:
    """The drive's state as the design's logical entries: ``[{state, pdiv}]``."""
    return [{"state": label, "pdiv": volume.as_dict() if volume else None}
            for label, volume in metadata_xml.entries(state)]


def trace_json(trace: list[TracedCall]) -> list[dict[str, Any]]:
    return [{"call": c.number, "port": c.port, "method": c.method, "args": c.args,
             "outcome": c.outcome} for c in trace]


def _recovered_json(drives: list[DriveRecovery]) -> list[dict[str, Any]]:
    return [{"vm": str(d.vm), "drive": str(d.drive), "case": d.case, "design": d.design,
             "changed": d.changed, "clean": d.clean, "error": error_json(d.error)}
            for d in drives]


def step_json(outcome: StepOutcome, trace: bool = False) -> dict[str, Any]:
    step = outcome.step
    out: dict[str, Any] = {
        "op": step.op, "ok": outcome.ok, "injected": outcome.injected,
        "crashed": outcome.crashed, "error": error_json(outcome.error),
        # extras
        "args": dict(step.args), **step.fault(), "calls": outcome.calls,
    }
    if step.note is not None:
        out["note"] = step.note
    if outcome.recovered is not None:
        out["recovered"] = _recovered_json(outcome.recovered)
    if outcome.gone:
        out["gone"] = [str(vm) for vm in outcome.gone]
    if trace:
        out["trace"] = trace_json(outcome.trace)
    return out


def final_json(host: MemoryHost) -> dict[str, Any]:
    vms: dict[str, Any] = {}
    with host.lock:
        for vm in host.vms.values():
            drives: dict[str, Any] = {}
            for name, drive in sorted(vm.drives.items()):
                entry: dict[str, Any] = {"source": drive.source}
                state: DriveState
                try:
                    state = vm.metadata.read(name)
                except CdromError as err:
                    state = Unreadable(err.reason)
                if isinstance(state, Unreadable):
                    entry["metadata"] = None
                    entry["metadata_error"] = InvalidMetadata(state.reason).message
                else:
                    entry["metadata"] = entries_json(state)
                entry["iface"], entry["index"] = drive.iface, drive.index
                drives[name.value] = entry
            vms[str(vm.id)] = {"drives": drives, "metadata_xml": vm.metadata.xml(),
                               "migrating": vm.migrating}
        volumes = [{**v.as_dict(), "active": active} for v, active in host.volumes.items()]
    return {"vms": vms, "volumes": volumes}


def promises_json(run: ScenarioRun) -> dict[str, Any]:
    found = violations(run.host, run.baseline, settled=True)
    return {"ok": not found, "violations": found}


def scenario_json(run: ScenarioRun, trace: bool = False) -> dict[str, Any]:
    final = final_json(run.host)
    final["promises"] = promises_json(run)
    return {"name": run.scenario.name,
            "steps": [step_json(s, trace) for s in run.steps],
            "final": final}


# --- Readable ------------------------------------------------------------------------------

_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_BLOCK_PATH = re.compile(r"/rhev/data-center/mnt/blockSD/")


def short(text: str) -> str:
    """UUIDs cut to their first 8 digits, block paths to ``blockSD:``: for reading only."""
    return _UUID.sub(r"\1", _BLOCK_PATH.sub("blockSD:", text))


def _outcome_text(outcome: StepOutcome) -> Text:
    if outcome.crashed:
        return Text("CRASHED: the service died, the host survived", style="bold magenta")
    if outcome.ok:
        return Text("ok", style="bold green")
    err = outcome.error
    assert err is not None
    return Text(f"{err.vdsm_name} ({err.code}): {short(err.message)}", style="bold red")


def _args_text(outcome: StepOutcome) -> str:
    step = outcome.step
    if step.op == "recover":
        return "recover every VM, on a fresh service (as at host start)"
    spec = step.args.get("cdromspec")
    if not isinstance(spec, dict):
        return short(repr(dict(step.args)))
    where = f"VM {step.args.get('vmID')} {spec.get('iface')}/{spec.get('index')}"
    if "drive_spec" in spec:
        ds = spec["drive_spec"]
        if not ds:
            what = "eject"
        elif isinstance(ds, dict):
            what = f"load volume {ds.get('domainID')}/{ds.get('imageID')}/{ds.get('volumeID')}"
        else:
            what = f"drive_spec {ds!r}"
    elif "path" in spec:
        what = f"load path {spec['path']}" if spec["path"] else "eject (path)"
    else:
        what = repr(spec)
    return short(f"{where}: {what}")


def _fault_text(outcome: StepOutcome) -> str:
    f = outcome.step.fault()
    if not f:
        return "-"
    if "crash_at_call" in f:
        text = f"crash before call {f['crash_at_call']}"
    else:
        text = f"fail call {f['fail_at_call']} ({f['fail_effect']})"
    return text + ("" if outcome.injected else " (not reached)")


def _trace_table(number: int, outcome: StepOutcome) -> Table:
    table = Table(title=f"Step {number}: port calls", title_justify="left", expand=True)
    table.add_column("#", justify="right")
    table.add_column("call", no_wrap=True)
    table.add_column("arguments", overflow="fold", ratio=3)
    table.add_column("outcome", overflow="fold", ratio=2)
    for c in outcome.trace:
        style = ("green" if c.outcome == "ok" else "magenta" if c.outcome == "crash"
                 else "yellow" if c.outcome.startswith("injected") else "red")
        table.add_row(str(c.number), f"{c.port}.{c.method}", short(c.args),
                      Text(short(c.outcome), style=style))
    return table


def _steps_table(run: ScenarioRun) -> Table:
    table = Table(title="Steps", title_justify="left", show_lines=True, expand=True)
    table.add_column("#", justify="right")
    table.add_column("request", overflow="fold", ratio=3)
    table.add_column("injection", overflow="fold", ratio=1)
    table.add_column("calls", justify="right")
    table.add_column("outcome", overflow="fold", ratio=2)
    for i, outcome in enumerate(run.steps, 1):
        lines: list[RenderableType] = [Text(f"{outcome.step.op}: {_args_text(outcome)}")]
        if outcome.step.note:
            lines.append(Text(outcome.step.note, style="italic"))
        for d in outcome.recovered or ():
            line = f"{short(str(d.vm))} {d.drive}: " + (
                f"case {d.case}: {d.design}" if d.case else "nothing to do")
            if not d.clean:
                line += " (NOT clean: the next recovery retries)"
            lines.append(Text(line, style="cyan"))
        table.add_row(str(i), Group(*lines), _fault_text(outcome), str(outcome.calls),
                      _outcome_text(outcome))
    return table


def _final_tree(host: MemoryHost) -> Tree:
    final = final_json(host)
    tree = Tree("[bold]Final VMs[/bold]")
    for vm_id, vm in final["vms"].items():
        node = tree.add(f"VM {short(vm_id)}" + (" (migrating)" if vm["migrating"] else ""))
        for name, drive in vm["drives"].items():
            d = node.add(f"drive {name} ({drive['iface']}/{drive['index']}) holds "
                         f"{short(drive['source']) if drive['source'] else '(empty tray)'}")
            if drive["metadata"] is None:
                d.add(Text(f"metadata unreadable: {drive['metadata_error']}", style="red"))
                continue
            if not drive["metadata"]:
                d.add("metadata: (no entry)")
            for entry in drive["metadata"]:
                pdiv = entry["pdiv"]
                what = (short(f"{pdiv['domainID']}/{pdiv['imageID']}/{pdiv['volumeID']}")
                        if pdiv else "empty")
                state = entry["state"] or "no state"
                d.add(Text(f"metadata entry [{state}] {what}",
                           style="yellow" if entry["state"] else ""))
        xml = metadata_xml.serialize(
            etree.fromstring(vm["metadata_xml"], etree.XMLParser(remove_blank_text=True,
                                                                 resolve_entities=False,
                                                                 no_network=True)),
            pretty=True)
        node.add(Group(Text("metadata_xml:", style="dim"),
                       Syntax(short(xml).rstrip(), "xml", word_wrap=True)))
    return tree


def _volumes_table(host: MemoryHost) -> Table:
    table = Table(title="Volumes", title_justify="left")
    for key in ("poolID", "domainID", "imageID", "volumeID"):
        table.add_column(key)
    table.add_column("active")
    for v in final_json(host)["volumes"]:
        active = Text("active", style="green") if v["active"] else Text("inactive", style="dim")
        table.add_row(short(v["poolID"]), short(v["domainID"]), short(v["imageID"]),
                      short(v["volumeID"]), active)
    return table


def render(console: Console, run: ScenarioRun, trace: bool = False) -> None:
    title = run.scenario.name or "(unnamed scenario)"
    console.rule(f"[bold]{title}")
    console.print(Text("UUIDs are cut to 8 digits here; --json shows them whole.", style="dim"))
    console.print(_steps_table(run))
    if trace:
        for i, outcome in enumerate(run.steps, 1):
            if outcome.trace:
                console.print(_trace_table(i, outcome))
    console.print(_final_tree(run.host))
    console.print(_volumes_table(run.host))
    promises = promises_json(run)
    if promises["ok"]:
        console.print(Panel(Text("Promises kept: no leaked volume, no marker, metadata names "
                                 "what each VM holds, unrelated metadata unchanged.",
                                 style="green")))
    else:
        console.print(Panel(Text("\n".join(short(v) for v in promises["violations"]),
                                 style="red"),
                            title="Promises broken (is a recover step missing?)"))
