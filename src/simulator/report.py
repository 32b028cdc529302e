"""The simulator's reports: the JSON contract (``--json``) and a readable rich rendering.

JSON keys are a public contract (see ``docs/simulator.md``): ``name``, ``steps[]`` (``op``,
``ok``, ``injected``, ``crashed``, ``error`` {``code``, ``name``, ``message``} or null) and
``final`` (``vms`` {VMID: {``drives`` {NAME: {``source``, ``metadata`` [{``state``,
``pdiv``}]}}, ``metadata_xml``}}, ``volumes`` [{PDIV, ``active``}]). Extra keys are added
beside them, never instead of them.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import TracedCall
from ovirt_cdrom.adapters.memory.invariants import violations
from ovirt_cdrom.domain.errors import CdromError
from ovirt_cdrom.service import DriveRecovery
from ovirt_cdrom.simulator.hostjson import host_json
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


def trace_json(trace: list[TracedCall]) -> list[dict[str, Any]]:
    return [{"call": c.number, "port": c.port, "method": c.method, "args": c.args,
             "outcome": c.outcome, "occurrence": c.occurrence} for c in trace]


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
    if outcome.markers:
        out["markers"] = outcome.markers
    if trace:
        out["trace"] = trace_json(outcome.trace)
        if outcome.after is not None:
            out["after"] = outcome.after
    return out


def promises_json(run: ScenarioRun) -> dict[str, Any]:
    found = violations(run.host, run.baseline, settled=True)
    return {"ok": not found, "violations": found}


def scenario_json(run: ScenarioRun, trace: bool = False) -> dict[str, Any]:
    final = host_json(run.host, run.scenario.labels)
    final["promises"] = promises_json(run)
    return {"name": run.scenario.name,
            "steps": [step_json(s, trace) for s in run.steps],
            "final": final}


# --- Readable ------------------------------------------------------------------------------

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_VOLUME = re.compile(rf"\b(?:/rhev/data-center/mnt/blockSD/)?({_UUID.pattern[2:-2]})"
                     rf"(?:/images)?/({_UUID.pattern[2:-2]})/({_UUID.pattern[2:-2]})\b")
MIN_PREFIX = 8


class Namer:
    """Readable names for one run: each UUID cut to its shortest prefix (8 digits at least)
    that no other UUID of the run shares, and a labelled ISO (``volumes[].name``) by its
    label wherever its volume is named."""

    def __init__(self, run: ScenarioRun) -> None:
        seen: set[str] = set()
        for text in _texts(run):
            seen.update(_UUID.findall(text))
        ordered = sorted(seen)
        self.prefix: dict[str, str] = {}
        for i, uuid in enumerate(ordered):
            common = max((_common(uuid, ordered[j]) for j in (i - 1, i + 1)
                          if 0 <= j < len(ordered)), default=0)
            self.prefix[uuid] = uuid[:max(MIN_PREFIX, common + 1)]
        self.labels = {(v.domain_id, v.image_id, v.volume_id): name
                       for v, name in run.scenario.labels.items()}

    def __call__(self, text: str) -> str:
        def volume(match: re.Match[str]) -> str:
            label = self.labels.get((match[1], match[2], match[3]))
            if label is not None:
                return label
            return match[0]
        text = _VOLUME.sub(volume, text)
        text = text.replace("/rhev/data-center/mnt/blockSD/", "blockSD:")
        return _UUID.sub(lambda m: self.prefix.get(m[0], m[0][:MIN_PREFIX]), text)


def _common(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _texts(run: ScenarioRun) -> list[str]:
    found = [str(vm.id) for vm in run.scenario.vms]
    found += [str(v.as_dict()) for v, _active in run.scenario.volumes]
    for outcome in run.steps:
        found.append(str(outcome.step.args))
        found += [c.args for c in outcome.trace]
    found.append(str(host_json(run.host)))
    return found


def _outcome_text(outcome: StepOutcome, name: Namer) -> Text:
    if outcome.crashed:
        return Text("CRASHED: the service died, the host survived", style="bold magenta")
    if outcome.ok:
        return Text("ok", style="bold green")
    err = outcome.error
    assert err is not None
    return Text(f"{err.vdsm_name} ({err.code}): {name(err.message)}", style="bold red")


def _args_text(outcome: StepOutcome, name: Namer) -> str:
    step = outcome.step
    if step.op == "recover":
        return "recover every VM, on a fresh service (as at host start)"
    spec = step.args.get("cdromspec")
    if not isinstance(spec, dict):
        return name(repr(dict(step.args)))
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
    return name(f"{where}: {what}")


def _fault_text(outcome: StepOutcome) -> str:
    step = outcome.step
    if step.crash is not None:
        text = f"crash before {step.crash}"
    elif step.fail is not None:
        text = f"fail {step.fail} ({step.fail_effect})"
    else:
        return ""
    return text + ("" if outcome.injected else " (not reached)")


def _call_outcome(c: TracedCall, name: Namer) -> Text:
    if c.outcome == "ok":
        return Text("ok", style="green")
    if c.outcome == "crash":
        return Text("crash: the process died before this call", style="magenta")
    if c.outcome.startswith("injected"):
        return Text(name(c.outcome), style="yellow")
    if "Volume in use" in c.outcome:
        # LVM's refusal to deactivate an LV another VM holds open: the volume stays for it.
        return Text("in use by another VM: left active for it (expected)", style="cyan")
    return Text(name(c.outcome), style="red")


def _trace_table(number: int, outcome: StepOutcome, name: Namer) -> Table:
    table = Table(title=f"Step {number}: port calls", title_justify="left", expand=True)
    table.add_column("#", justify="right")
    table.add_column("call", no_wrap=True)
    table.add_column("arguments", ratio=3, overflow="fold")  # ids wrap, never cut
    table.add_column("outcome", ratio=2, overflow="fold")
    for c in outcome.trace:
        args = c.args
        if c.call == "metadata.write":
            vm, drive, state = args.split(" ", 2)
            args = f"{vm} {drive}: writes {state.strip('[]')}"
        table.add_row(str(c.number), c.call, name(args), _call_outcome(c, name))
    return table


def _after_text(outcome: StepOutcome, name: Namer) -> Text:
    """The host after the step, in a line per drive (``--trace``)."""
    assert outcome.after is not None
    lines = []
    for vm_id, vm in outcome.after["vms"].items():
        for drive, d in vm["drives"].items():
            entries = d["metadata"]
            said = ("unreadable" if entries is None else
                    ", ".join(f"{e['state'] or 'settled'} {_pdiv_text(e['pdiv'])}"
                              for e in entries))
            lines.append(f"VM {vm_id} {drive}: tray {d['source'] or 'empty'}; metadata {said}")
    active = [_pdiv_text(v) for v in outcome.after["volumes"] if v["active"]]
    lines.append("active volumes: " + (", ".join(active) or "none"))
    return Text(name("\n".join(lines)), style="dim")


def _pdiv_text(pdiv: dict[str, Any] | None) -> str:
    if not pdiv:
        return "empty"
    return f"{pdiv['domainID']}/{pdiv['imageID']}/{pdiv['volumeID']}"


def _steps_table(run: ScenarioRun, name: Namer) -> Table:
    table = Table(title="Steps", title_justify="left", show_lines=True, expand=True)
    table.add_column("#", justify="right")
    table.add_column("step", ratio=3, overflow="fold")
    table.add_column("calls", justify="right")
    table.add_column("outcome", ratio=2, overflow="fold")
    for i, outcome in enumerate(run.steps, 1):
        lines: list[RenderableType] = [Text(f"{outcome.step.op}: {_args_text(outcome, name)}")]
        if outcome.step.note:
            lines.append(Text(outcome.step.note, style="italic"))
        injection = _fault_text(outcome)
        if injection:
            lines.append(Text(f"injected: {injection}", style="magenta"))
        for d in outcome.recovered or ():
            line = f"{name(str(d.vm))} {d.drive}: " + (
                f"case {d.case}: {d.design}" if d.case else "nothing to do")
            if not d.clean:
                line += " (NOT clean: the next recovery retries)"
            lines.append(Text(line, style="cyan"))
        for vm in outcome.gone:
            lines.append(Text(f"{name(str(vm))}: gone (shut down meanwhile): nothing to "
                              "recover", style="cyan"))
        if outcome.markers:
            lines.append(Text("left markers for recovery: " + name(", ".join(outcome.markers)),
                              style="yellow"))
        table.add_row(str(i), Group(*lines), str(outcome.calls), _outcome_text(outcome, name))
    return table


def _final_tree(run: ScenarioRun, name: Namer) -> Tree:
    final = host_json(run.host, run.scenario.labels)
    tree = Tree("[bold]Final VMs[/bold]")
    for vm_id, vm in final["vms"].items():
        node = tree.add(f"VM {name(vm_id)}" + (" (migrating)" if vm["migrating"] else ""))
        for drive_name, drive in vm["drives"].items():
            held = name(drive["source"]) if drive["source"] else "(empty tray)"
            d = node.add(f"drive {drive_name} ({drive['iface']}/{drive['index']}) holds {held}")
            if drive["metadata"] is None:
                d.add(Text(f"metadata unreadable: {drive['metadata_error']}", style="red"))
                continue
            if not drive["metadata"]:
                d.add("metadata: (no entry)")
            for entry in drive["metadata"]:
                state = entry["state"] or "no state"
                d.add(Text(f"metadata entry [{state}] {name(_pdiv_text(entry['pdiv']))}",
                           style="yellow" if entry["state"] else ""))
        try:
            xml = metadata_xml.serialize(metadata_xml.parse_block(vm["metadata_xml"]),
                                         pretty=True)
        except CdromError:
            xml = vm["metadata_xml"]
        node.add(Group(Text("metadata_xml, as stored (ids whole):", style="dim"),
                       Syntax(xml.rstrip(), "xml", word_wrap=True)))
    return tree


def _volumes_table(run: ScenarioRun, name: Namer) -> Table:
    table = Table(title="Volumes", title_justify="left")
    table.add_column("ISO", overflow="fold")
    for key in ("poolID", "domainID", "imageID", "volumeID"):
        table.add_column(key, overflow="fold")
    table.add_column("active", overflow="fold")
    for v in host_json(run.host, run.scenario.labels)["volumes"]:
        active = Text("active", style="green") if v["active"] else Text("inactive", style="dim")
        table.add_row(v.get("name", "-"), name(v["poolID"]), name(v["domainID"]),
                      name(v["imageID"]), name(v["volumeID"]), active)
    return table


def render(console: Console, run: ScenarioRun, trace: bool = False) -> None:
    name = Namer(run)
    title = run.scenario.name or "(unnamed scenario)"
    console.rule()
    console.print(Text(title, style="bold"), justify="center")
    console.print(Text("UUIDs are cut to their shortest unique prefix here; --json shows them "
                       "whole.", style="dim"))
    console.print(_steps_table(run, name))
    if trace:
        for i, outcome in enumerate(run.steps, 1):
            if outcome.trace:
                console.print(_trace_table(i, outcome, name))
            if outcome.after is not None:
                console.print(Text(f"After step {i}:", style="bold dim"))
                console.print(_after_text(outcome, name))
    console.print(_final_tree(run, name))
    console.print(_volumes_table(run, name))
    promises = promises_json(run)
    if promises["ok"]:
        console.print(Panel(Text("Promises kept: no leaked volume, no marker, metadata names "
                                 "what each VM holds, unrelated metadata unchanged.",
                                 style="green")))
    else:
        console.print(Panel(Text("\n".join(name(v) for v in promises["violations"]),
                                 style="red"),
                            title="Promises broken (is a recover step missing?)"))


def summary(runs: list[ScenarioRun]) -> Text:
    """One line for a run of several scenarios: how many kept every promise, which did not."""
    broken = [r.scenario.name or f"#{i}" for i, r in enumerate(runs, 1)
              if not promises_json(r)["ok"]]
    text = f"{len(runs)} scenarios: {len(runs) - len(broken)} kept every promise"
    if broken:
        return Text(text + "; broken in: " + ", ".join(broken), style="bold red")
    return Text(text + ".", style="bold green")


class Progress:
    """``scenario i/N`` on stderr while scenarios run (only when stderr is a terminal)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.count = total, enabled, 0

    def advance(self, name: str | None) -> None:
        self.count += 1
        if self.enabled:
            label = (name or "")[:50]
            sys.stderr.write(f"\r\x1b[Kscenario {self.count}/{self.total} {label}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
