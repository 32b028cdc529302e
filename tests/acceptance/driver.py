"""The acceptance driver: the scenarios' words as calls on the tests' one rig (``tests/rig.py``).

The steps in ``conftest.py`` delegate here (or to the rig itself where a step needs no
translation), and this only translates: names in the scenarios ("vm1", "fedora",
"rhel8") become the rig's ids; a drive's metadata is set and read as a
:class:`DriveState` through the codec (the design's entries, ``ejecting:fedora,
loading:debian``, are the codec's :func:`~ovirt_cdrom.adapters.metadata_xml.entries`);
faults are armed on the rig by the call they mean; the promises are the product's checker.

A fault or crash a scenario arms in its ``Given`` steps applies to the next ``When`` step
(an engine call, or a restart and recovery) and to it only, and must land there: a failure
that step never reached fails it (a scenario must not pass for another reason than the one
it names). ``Given`` steps that go through the engine themselves ("vm1 holds fedora") run
with nothing armed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import At, Effect
from ovirt_cdrom.adapters.vdsm_layout import DATA_CENTER, block_path
from ovirt_cdrom.domain.errors import VolumeInUse
from ovirt_cdrom.domain.model import DiskType, EmptyTray, FileTray, VmId, VolumeRef
from ovirt_cdrom.domain.state import EMPTY, DriveState, Unreadable
from ovirt_cdrom.service import RecoveryReport
from rig import SDC, SUCCESS, Rig, block_media, legacy_path, spec, unrelated_metadata, vm_id, volume

# "every <call> call fails": this many occurrences within the step (a step makes a handful).
EVERY = 100

# What the fault plan raises at a port's call (adapters/faults.py), by the scenarios' words:
# the hypervisor's error before the call, its timeout after it took effect; a storage error
# for the volumes (a teardown that times out is one); a metadata error for the metadata.
_KINDS: dict[tuple[str, Effect], frozenset[str]] = {
    ("hypervisor", "before"): frozenset({"hypervisor error"}),
    ("hypervisor", "after"): frozenset({"timeout"}),
    ("volumes", "before"): frozenset({"storage error", "timeout"}),
    ("volumes", "after"): frozenset({"storage error", "timeout"}),
    ("metadata", "before"): frozenset({"metadata error"}),
    ("metadata", "after"): frozenset({"metadata error"}),
}
_NS_DEVICE = f"{{{metadata_xml.NS}}}device"
_NS_CHANGE = f"{{{metadata_xml.NS}}}change"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one engine call answered (None: the process crashed), and its port calls."""

    answer: dict[str, Any] | None
    calls: tuple[str, ...]

    @property
    def crashed(self) -> bool:
        return self.answer is None

    def count(self, call: str) -> int:
        return self.calls.count(call)


@dataclass(frozen=True, slots=True)
class Concurrent:
    """Two calls; ``overlapped``: the second got past the drive lock (it asked whether the
    VM migrates) while the first was still running. ``calls``: both calls' port calls."""

    first: Outcome
    second: Outcome | None
    overlapped: bool
    calls: tuple[str, ...]


@dataclass(slots=True)
class Observed:
    """The VM's CD-ROM metadata as stored, at the start of each matching port call."""

    call: str
    seen: list[str] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)  # <device name="sdc"> elements


class AcceptanceDriver:
    """One host in memory (a :class:`Rig`, either profile) as the engine and an operator
    see it."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.report: RecoveryReport | None = None
        self._names: dict[VolumeRef, str] = {}
        self._arming: list[Callable[[], None]] = []
        self._failing: set[str] = set()   # the calls armed to fail in the coming step
        self._in_use: list[str] = []      # the "in use" refusals given (memory profile)

    # --- names --------------------------------------------------------------------------

    def iso(self, name: str) -> VolumeRef:
        """The ISO volume a scenario calls ``name`` (on the host or not)."""
        ref = volume(name)
        self._names[ref] = name
        return ref

    @staticmethod
    def vm(name: str) -> VmId:
        return vm_id(name)

    # --- Given: the host ----------------------------------------------------------------

    def add_isos(self, names: list[str]) -> None:
        for name in names:
            self.rig.add_volume(self.iso(name))

    def add_vm(self, name: str) -> None:
        """A running VM with an empty sata CD-ROM, its metadata as vdsm wrote it at VM
        start: oVirt's values and the empty ``<device name="sdc"/>``."""
        vm = self.rig.add_vm(self.vm(name))
        self.rig.write(vm, SDC, EMPTY)
        self.rig.settle(vm)

    def hold(self, vm: str, cdromspec: dict[str, Any]) -> None:
        """The engine loaded that CD into the VM earlier (nothing armed may hit it)."""
        assert not self._arming, "a fault armed before a set-up step would hit that step"
        answer = self.rig.change(self.vm(vm), cdromspec)
        assert answer == SUCCESS, answer

    def set_entries(self, vm: str, entries: str) -> None:
        """Write the drive's metadata as an interrupted operation left it."""
        self.rig.write(self.vm(vm), SDC, self.parse_entries(entries))

    def set_vdsm450_element(self, vm: str, xml: str) -> None:
        """Make the VM's metadata oVirt's values and ``xml`` as its CD-ROM element, exactly
        as given (an element whose text is ``{fedora}`` holds that ISO's PDIV elements
        there instead, as vdsm writes them)."""
        wrapper = metadata_xml.parse_untrusted(
            f'<wrap xmlns:{metadata_xml.PREFIX}="{metadata_xml.NS}">{xml.strip()}</wrap>')
        (element,) = wrapper
        for node in list(element.iter()):
            text = (node.text or "").strip()
            if text.startswith("{") and text.endswith("}"):
                node.text = None
                for n, (key, value) in enumerate(sorted(self.iso(text[1:-1]).as_dict().items())):
                    pdiv = etree.Element(f"{{{metadata_xml.NS}}}{key}")
                    pdiv.text = value
                    node.insert(n, pdiv)
        block = metadata_xml.parse_block(unrelated_metadata(self.vm(vm)))
        block.append(element)
        self.rig.host.set_raw_metadata(self.vm(vm), metadata_xml.serialize(block))

    def set_tray(self, vm: str, tray: str) -> None:
        """Put ``tray`` (an ISO name or ``empty``) in the VM's drive, behind our back."""
        media = None if tray == "empty" else block_media(self.iso(tray))
        self.rig.host.put(self.vm(vm), SDC, media)

    def set_active(self, names: list[str]) -> None:
        """Exactly these of the host's volumes are active."""
        wanted = {self.iso(n) for n in names}
        for ref in list(self.rig.host.volumes):
            self.rig.add_volume(ref, active=ref in wanted)

    def fail(self, call: str, kind: str, effect: Effect = "before", occurrence: int = 1,
             every: bool = False) -> None:
        """Arm the next step's ``occurrence``-th ``call`` (``every``: that one and every
        later one) to fail with an error of ``kind``."""
        if kind == "in use":
            assert (call, effect, occurrence, every) == ("volumes.teardown", "before", 1, False)
            self._arming.append(self._in_use_once)
            self._failing.add("in use")
            return
        port = call.partition(".")[0]
        if kind not in _KINDS.get((port, effect), ()):
            raise ValueError(f"a fault at {call} ({effect}) raises "
                             f"{' or '.join(sorted(_KINDS.get((port, effect), ())))}, "
                             f"not {kind!r}")
        last = occurrence + EVERY if every else occurrence + 1
        failures: dict[At, Effect] = {At(call, n): effect for n in range(occurrence, last)}
        self._arming.append(lambda: self.rig.fail_many(failures))
        self._failing.add(call)

    def crash(self, call: str, effect: Effect, occurrence: int = 1) -> None:
        """Arm the process to die at the next step's ``occurrence``-th ``call``."""
        self._arming.append(lambda: self.rig.crash(call, occurrence, effect))

    def _in_use_once(self) -> None:
        """The next teardown is refused because someone holds the volume open."""
        if self.rig.storage is not None:
            # vdsm 4.50 swallows LVM's "in use" refusal: it answers success, the LV stays
            # active (the adapter then finds it still active: VolumeInUse).
            self.rig.storage.refuse("teardownImage", 0, "OK")
            return
        given = len(self._in_use)

        def refuse(name: str) -> None:
            if len(self._in_use) == given:
                self._in_use.append(name)
                raise VolumeInUse("Logical volume in use (held open)")

        self.rig.before("volumes.teardown", refuse)

    def observe(self, call: str, vm: str) -> Observed:
        """Record the VM's CD-ROM metadata at the start of each ``call``."""
        observed = Observed(call)

        def hook(_name: str) -> None:
            observed.seen.append(self.entries(vm))
            observed.elements.append(len(self.cd_elements(vm)))

        self.rig.before(call, hook)
        return observed

    # --- When: the engine, and the host's life -------------------------------------------

    def _arm(self) -> set[str]:
        """Arm what the ``Given`` steps asked for; answer the calls that must fail."""
        for arm in self._arming:
            arm()
        self._arming.clear()
        failing, self._failing = self._failing, set()
        return failing

    def _landed(self, failing: set[str], in_use_before: int) -> None:
        """Every call armed to fail failed in the step just run."""
        trace = self.rig.plan.trace
        for call in failing - {"in use"}:
            assert any(c.call == call and c.outcome.startswith("injected failure")
                       for c in trace), f"the failure armed at {call} was never reached"
        if "in use" in failing:
            assert len(self._in_use) > in_use_before or any(
                c.call == "volumes.teardown" and "in use" in c.outcome.lower()
                for c in trace), "the teardown armed to answer 'in use' never ran"

    def change_cd(self, vm: VmId | object, cdromspec: object) -> Outcome:
        """``VM.changeCD`` as the engine sends it, with the faults armed."""
        failing, in_use = self._arm(), len(self._in_use)
        answer = self.rig.change(vm, cdromspec)
        self._landed(failing, in_use)
        return Outcome(answer, tuple(self.rig.calls()))

    def volume_spec(self, iso: str | None) -> dict[str, Any]:
        """vdsm's cdromspec for ``iso`` by PDIV (None ejects)."""
        return spec(None if iso is None else self.iso(iso))

    @staticmethod
    def legacy_spec(name: str | None) -> dict[str, Any]:
        """The legacy ``path`` cdromspec (None: ``path: ""``, which ejects)."""
        return spec("" if name is None else legacy_path(name))

    def volume_path_spec(self, iso: str, form: str) -> dict[str, Any]:
        """The legacy ``path`` naming ``iso``: the ``pool`` form older engines sent, or the
        ``block`` form libvirt gets (no pool in it)."""
        v = self.iso(iso)
        path = {"pool": f"{DATA_CENTER}/{v.pool_id}/{v.domain_id}/images/{v.image_id}"
                        f"/{v.volume_id}",
                "block": block_path(v)}[form]
        return spec(path)

    def change_cd_mutated(self, vm: str, iso: str | None, field_path: str,
                          value: str) -> Outcome:
        """A request for ``iso`` (by PDIV; None: the legacy ISO rhel8 by path) with one
        field replaced by a JSON value, or removed (``(missing)``)."""
        cdromspec = self.volume_spec(iso) if iso is not None else self.legacy_spec("rhel8")
        request: dict[str, Any] = {"vmID": str(self.vm(vm)), "cdromspec": cdromspec}
        _mutate(request, field_path.split("."), value)
        return self.change_cd(request.get("vmID"), request.get("cdromspec"))

    def concurrent_change(self, vm: str, iso: str) -> Concurrent:
        """Two engine calls on one drive; the second starts while the first prepares."""
        second_entered = threading.Event()
        first_done = threading.Event()
        started = threading.Event()
        results: dict[str, Outcome] = {}
        threads: list[threading.Thread] = []

        def second() -> None:
            answer = self.rig.api.changeCD(str(self.vm(vm)), self.volume_spec(iso))
            results["second"] = Outcome(answer, ())

        def on_prepare(_name: str) -> None:
            if started.is_set():
                return
            started.set()
            threads.append(threading.Thread(target=second, daemon=True))
            threads[0].start()
            # If the second call is not serialized it reaches the hypervisor now.
            second_entered.wait(0.3)

        def on_migrating(_name: str) -> None:
            if started.is_set() and not first_done.is_set():
                second_entered.set()

        self.rig.before("volumes.prepare", on_prepare)
        self.rig.before("hypervisor.is_migrating", on_migrating)
        first = self.change_cd(self.vm(vm), self.volume_spec(iso))
        overlapped = second_entered.is_set()
        first_done.set()
        for thread in threads:
            thread.join(10)
        return Concurrent(first, results.get("second"), overlapped, tuple(self.rig.calls()))

    def change_during(self, vm: str, iso: str, at_call: str, other_vm: str) -> Concurrent:
        """Insert ``iso`` into ``vm``; at its first ``at_call`` the engine ejects the CD of
        ``other_vm``, to completion (another drive: it does not wait)."""
        others: list[Outcome] = []

        def hook(_name: str) -> None:
            if not others:
                others.append(Outcome(None, ()))  # the eject passes here too: once only
                answer = self.rig.api.changeCD(str(self.vm(other_vm)), self.volume_spec(None))
                others[0] = Outcome(answer, ())

        self.rig.before(at_call, hook)
        first = self.change_cd(self.vm(vm), self.volume_spec(iso))
        return Concurrent(first, others[0] if others else None, True, tuple(self.rig.calls()))

    def restart_and_recover(self) -> RecoveryReport:
        """The process restarts: a fresh service runs ``recover_all()``, as at vdsm start."""
        failing, in_use = self._arm(), len(self._in_use)
        report = self.rig.recover()
        assert report is not None, "the process crashed during recovery"
        self._landed(failing, in_use)
        self.report = report
        return report

    def heal(self) -> None:
        """No fault remains: none outlives the step it was armed for."""
        assert not self._arming, "faults armed for a step that did not come"

    # --- Then: what the engine, the VM and the host show ----------------------------------

    def shows(self, vm: str) -> str:
        """What the VM shows in its CD-ROM (``virsh domblklist``): an ISO's name, ``path
        <name>`` for a legacy ISO, ``empty``; asserting it was opened the right way."""
        with self.rig.host.lock:
            drive = self.rig.host.drive(self.vm(vm), SDC)
            tray, disk_type = drive.tray, drive.disk_type
        if isinstance(tray, EmptyTray):
            return "empty"
        held = self.rig.host.volume_in(tray)
        if held is not None:
            # A block volume opened as a file is refused by QEMU.
            assert disk_type is DiskType.BLOCK, f"{tray} loaded as {disk_type}"
            return self._names.get(held, str(held))
        if isinstance(tray, FileTray):
            assert disk_type is DiskType.FILE, f"{tray} loaded as {disk_type}"
            name = tray.path.rsplit("/", 1)[-1].removesuffix(".iso")
            if tray.path == legacy_path(name):
                return f"path {name}"
        return str(tray)

    def stored_state(self, vm: str) -> DriveState:
        """The drive's state as the VM's metadata stores it (read back from the XML)."""
        return metadata_xml.read(self._block(vm), SDC)

    def entries(self, vm: str) -> str:
        """The drive's metadata in the design's terms: ``empty``, ``fedora``,
        ``ejecting:fedora, loading:debian``."""
        state = self.stored_state(vm)
        if isinstance(state, Unreadable):
            return str(state)
        return ", ".join(("" if mark is None else f"{mark}:")
                         + ("empty" if ref is None else self._names.get(ref, str(ref)))
                         for mark, ref in metadata_xml.entries(state))

    def parse_entries(self, text: str) -> DriveState:
        """``empty`` | ``fedora`` | ``loading:fedora`` | ``ejecting:fedora, loading:debian``
        as the state those entries are."""
        found: list[metadata_xml.Entry] = []
        for part in _names(text) or ["empty"]:
            mark, _, name = part.rpartition(":")
            found.append((mark or None, None if name == "empty" else self.iso(name)))
        return metadata_xml.from_entries(found)

    def cd_elements(self, vm: str) -> list[etree._Element]:
        """The ``<ovirt-vm:device name="sdc">`` elements of the VM's metadata as stored."""
        return [el for el in self._block(vm).iterchildren(_NS_DEVICE)
                if el.get("name") == SDC.value]

    def cd_element_is_empty(self, vm: str) -> bool:
        """Whether the CD-ROM entry is exactly the empty ``<device devtype="disk"
        name="sdc"/>``."""
        els = self.cd_elements(vm)
        return (len(els) == 1 and len(els[0]) == 0 and not (els[0].text or "").strip()
                and sorted(els[0].items()) == [("devtype", "disk"), ("name", SDC.value)])

    def markers(self, vm: str) -> list[str]:
        """Every pending-change marker of the CD-ROM entries, in either encoding."""
        found = []
        for el in self.cd_elements(vm):
            if el.get("state") is not None:
                found.append(f"state={el.get('state')}")
            found += ["<change>" for _ in el.iter(_NS_CHANGE)]
        return found

    def active(self) -> set[str]:
        return {self._names.get(v, str(v)) for v in self.rig.active()}

    def unrelated_unchanged(self, vm: str) -> bool:
        """Whether the VM's metadata that is not the CD-ROM entry means what it meant when
        the VM was set up."""
        assert self.vm(vm) in self.rig.baseline, f"{vm} was never settled"
        return self.vm(vm) not in self.rig.observe().unrelated_changed

    def recovery_cases(self) -> list[str]:
        """The design's recovery rows the last recovery applied, drive by drive."""
        assert self.report is not None, "no recovery ran"
        return [d.case for d in self.report.drives if d.case is not None]

    def _block(self, vm: str) -> etree._Element:
        with self.rig.host.lock:
            return self.rig.host.vm(self.vm(vm)).metadata.element()


# --- helpers -------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    """``"fedora, debian and ubuntu"`` as names; ``none``/``empty``/nothing: none."""
    text = text.strip()
    if text in ("none", "empty", ""):
        return []
    return [p.strip() for p in text.replace(" and ", ",").split(",") if p.strip()]


def _mutate(request: dict[str, Any], path: list[str], value: str) -> None:
    parent: Any = request
    for key in path[:-1]:
        parent = parent[key]
    if value == "(missing)":
        del parent[path[-1]]
    else:
        parent[path[-1]] = json.loads(value)
