"""Scenario files: load YAML or JSON, validate every field, name the field at fault.

The format is a public contract (see ``docs/simulator.md``): ``name``, ``volumes``,
``vms`` (``id``, ``migrating``, ``metadata_xml``, ``drives`` with ``iface``, ``index``,
``loaded``, ``metadata``) and ``steps`` (``changeCD`` or ``recover``, each optionally with
``fail_at_call`` + ``fail_effect`` or ``crash_at_call``, or the named ``fail_at`` and
``crash_at`` ``{call, occurrence}``). Extensions: ``files``,
``metadata_encoding``, a legacy path as ``loaded``, and per step ``note`` and ``unchecked``.

Validation is done once, here; the runner trusts what it gets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.faults import CALL_NAMES, At, Effect
from ovirt_cdrom.adapters.vdsm_api import ChangeCdRequest
from ovirt_cdrom.domain.errors import CdromError, InvalidParameter
from ovirt_cdrom.domain.model import (
    DriveName,
    LoadPath,
    VmId,
    VolumeRef,
    parse_index,
    parse_uuid,
)
from ovirt_cdrom.domain.state import DriveState, settled

Op = Literal["changeCD", "recover"]
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ScenarioError(ValueError):
    """An invalid scenario file; ``path`` names the field at fault (``steps[2].changeCD``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DriveSetup:
    iface: str
    index: int
    name: DriveName
    loaded: VolumeRef | str | None  # a volume, a legacy path (extension), or empty
    state: DriveState | None        # what ``metadata`` sets up; None: the default

    def default_state(self) -> DriveState:
        """The settled state naming the volume in the tray, or the empty one."""
        return settled(self.loaded if isinstance(self.loaded, VolumeRef) else None)


@dataclass(frozen=True, slots=True)
class VmSetup:
    id: VmId
    migrating: bool
    metadata_xml: str | None
    drives: tuple[DriveSetup, ...]


@dataclass(frozen=True, slots=True)
class Step:
    op: Op
    args: Mapping[str, Any]
    fail: At | None = None
    fail_effect: Effect = "before"
    crash: At | None = None
    note: str | None = None

    def fault(self) -> dict[str, Any]:
        """The injection the step asked for, as the step gave it (empty: none)."""
        if self.crash is not None:
            return _point("crash_at", self.crash)
        if self.fail is not None:
            return {**_point("fail_at", self.fail), "fail_effect": self.fail_effect}
        return {}


def _point(key: str, at: At) -> dict[str, Any]:
    if at.number is not None:
        return {f"{key}_call": at.number}
    return {key: {"call": at.call, "occurrence": at.occurrence}}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str | None
    volumes: tuple[tuple[VolumeRef, bool], ...]
    vms: tuple[VmSetup, ...]
    steps: tuple[Step, ...]
    files: frozenset[str] | None = None
    # None: the configuration's (OVIRT_CDROM_METADATA_ENCODING, else the default)
    metadata_encoding: metadata_xml.Encoding | None = None
    labels: Mapping[VolumeRef, str] = field(default_factory=dict)  # ISOs' names, optional


# --- Loading -------------------------------------------------------------------------------


def load_text(text: str, source: str = "", max_values: int | None = None
              ) -> tuple[list[Scenario], bool]:
    """Parse a document; return its scenarios and whether it held a list of them."""
    data = _decode(text, source)
    return parse_document(data, max_values)


def parse_document(data: object, max_values: int | None = None) -> tuple[list[Scenario], bool]:
    """Validate a decoded document (one scenario mapping, or a list of them)."""
    _check_size(data, MAX_NODES if max_values is None else max_values)
    if isinstance(data, Mapping):
        return [parse_scenario(data, "")], False
    if isinstance(data, list):
        if not data:
            raise ScenarioError("", "the file holds an empty list of scenarios")
        return [parse_scenario(item, f"[{i}]") for i, item in enumerate(data)], True
    raise ScenarioError("", "expected a scenario (a mapping) or a list of scenarios, got "
                        f"{_kind(data)}")


def _decode(text: str, source: str) -> object:
    if source.endswith(".json") or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except RecursionError:
            raise ScenarioError("", "nested too deeply") from None
        except json.JSONDecodeError as err:
            if source.endswith(".json"):
                raise ScenarioError("", f"not valid JSON: {err}") from None
        except ValueError as err:  # e.g. an integer past Python's 4300-digit limit
            raise ScenarioError("", f"not valid JSON: {err}") from None
    if _flow_depth(text) > MAX_DEPTH:
        # libyaml recurses on the C stack: a deep enough flow collection crashes it.
        raise ScenarioError("", f"nested deeper than {MAX_DEPTH} levels")
    try:
        return yaml.load(text, Loader=_LOADER)
    except RecursionError:
        raise ScenarioError("", "nested too deeply") from None
    except yaml.YAMLError as err:
        text = str(err).replace("<unicode string>", source or "<input>")
        raise ScenarioError("", f"not valid YAML: {text}") from None
    except ValueError as err:  # e.g. an integer past Python's 4300-digit limit
        raise ScenarioError("", f"not valid YAML: {err}") from None


# YAML aliases let a few lines stand for a huge tree (a "billion laughs"); the report echoes
# each step's arguments, so bound the expanded document, not only the file.
MAX_NODES = 2_000_000


def _check_size(data: object, limit: int) -> None:
    """Refuse a document whose expanded tree has more than ``limit`` values."""
    budget = limit
    stack = [data]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ScenarioError("", f"the document has more than {limit} values once its "
                                "YAML aliases are expanded (--max-values raises the limit)")
        if isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


MAX_DEPTH = 200
_BRACKETS = re.compile(r"[\[\]{}]")


def _flow_depth(text: str) -> int:
    """An upper bound of the nesting of YAML flow collections (``[``, ``{``) in ``text``.

    Brackets inside quoted strings count too: the bound only errs on the safe side. Block
    collections need one more indentation per level, so their depth is bounded by the
    file's line length and libyaml copes with them.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


# --- Validation ----------------------------------------------------------------------------

_SCENARIO_KEYS = ("name", "volumes", "vms", "steps", "files", "metadata_encoding")
_VOLUME_KEYS = ("name", *VolumeRef.KEYS, "active")
_VM_KEYS = ("id", "migrating", "metadata_xml", "drives")
_DRIVE_KEYS = ("iface", "index", "loaded", "metadata")
_ENTRY_KEYS = ("state", "pdiv")
_STEP_OPS: tuple[Op, ...] = ("changeCD", "recover")
_INJECTIONS = ("fail_at_call", "fail_at", "crash_at_call", "crash_at")
_STEP_KEYS = (*_STEP_OPS, *_INJECTIONS, "fail_effect", "note", "unchecked")
MAX_CALL = 1_000_000  # far beyond any step's calls (a recovery of 10,000 VMs makes 30,000)


def parse_scenario(data: object, path: str) -> Scenario:
    m = _mapping(data, path or "scenario")
    _only(m, path, _SCENARIO_KEYS)
    name = _optional_str(m, "name", path)
    encoding: metadata_xml.Encoding | None = None
    if m.get("metadata_encoding") is not None:
        try:
            encoding = metadata_xml.Encoding.parse(m["metadata_encoding"])
        except ValueError as err:
            raise ScenarioError(_join(path, "metadata_encoding"), str(err)) from None
    files: frozenset[str] | None = None
    if m.get("files") is not None:
        where = _join(path, "files")
        files = frozenset(_absolute_path(p, f"{where}[{i}]")
                          for i, p in enumerate(_list(m["files"], where)))
    volumes, labels = _volumes(m.get("volumes"), _join(path, "volumes"))
    vms = _vms(m.get("vms"), _join(path, "vms"))
    where = _join(path, "steps")
    if "steps" not in m:
        raise ScenarioError(where, "missing")
    steps = tuple(_step(s, f"{where}[{i}]") for i, s in enumerate(_list(m["steps"], where)))
    return Scenario(name, volumes, vms, steps, files, encoding, labels)


def _volumes(data: object, path: str
             ) -> tuple[tuple[tuple[VolumeRef, bool], ...], dict[VolumeRef, str]]:
    """The volumes and whether each is active; the labels (``name``) some carry."""
    out: dict[VolumeRef, bool] = {}
    labels: dict[VolumeRef, str] = {}
    for i, item in enumerate(_list(data, path)):
        where = f"{path}[{i}]"
        m = _mapping(item, where)
        _only(m, where, _VOLUME_KEYS)
        ref = _pdiv(m, where)
        if ref in out:
            raise ScenarioError(where, f"volume {ref} is listed twice")
        out[ref] = _bool(m, "active", where)
        name = _optional_str(m, "name", where)
        if name is not None:
            if not name.strip() or len(name) > 200 or not name.isprintable():
                raise ScenarioError(_join(where, "name"),
                                    "expected a printable label of 1 to 200 characters")
            labels[ref] = name
    return tuple(out.items()), labels


def _vms(data: object, path: str) -> tuple[VmSetup, ...]:
    vms: list[VmSetup] = []
    seen: set[VmId] = set()
    for i, item in enumerate(_list(data, path)):
        where = f"{path}[{i}]"
        m = _mapping(item, where)
        _only(m, where, _VM_KEYS)
        if "id" not in m:
            raise ScenarioError(_join(where, "id"), "missing")
        vm = VmId(_uuid(m["id"], _join(where, "id")))
        if vm in seen:
            raise ScenarioError(_join(where, "id"), f"VM {vm} is listed twice")
        seen.add(vm)
        xml = _optional_str(m, "metadata_xml", where)
        if xml is not None:
            try:
                metadata_xml.parse_block(xml)
            except CdromError as err:
                raise ScenarioError(_join(where, "metadata_xml"), str(err)) from None
        drives: list[DriveSetup] = []
        dwhere = _join(where, "drives")
        for j, d in enumerate(_list(m.get("drives"), dwhere)):
            drive = _drive(d, f"{dwhere}[{j}]")
            if any(x.name == drive.name for x in drives):
                raise ScenarioError(f"{dwhere}[{j}]", f"drive {drive.name} is listed twice")
            drives.append(drive)
        vms.append(VmSetup(vm, _bool(m, "migrating", where), xml, tuple(drives)))
    return tuple(vms)


def _drive(data: object, path: str) -> DriveSetup:
    m = _mapping(data, path)
    _only(m, path, _DRIVE_KEYS)
    for key in ("iface", "index"):
        if key not in m:
            raise ScenarioError(_join(path, key), "missing")
    try:
        index = parse_index(m["index"])
    except InvalidParameter as err:
        raise ScenarioError(_join(path, "index"), err.reason) from None
    try:
        name = DriveName.from_iface_index(m["iface"], index)
    except InvalidParameter as err:
        raise ScenarioError(_join(path, "iface"), err.reason) from None
    loaded: VolumeRef | str | None = None
    value = m.get("loaded")
    if isinstance(value, str):
        loaded = _absolute_path(value, _join(path, "loaded"))
    elif value is not None:
        where = _join(path, "loaded")
        lm = _mapping(value, where)
        _only(lm, where, VolumeRef.KEYS)
        loaded = _pdiv(lm, where)
    state: DriveState | None = None
    if m.get("metadata") is not None:
        where = _join(path, "metadata")
        entries = [_entry(e, f"{where}[{k}]") for k, e in enumerate(_list(m["metadata"], where))]
        try:
            state = metadata_xml.from_entries(entries)
        except CdromError as err:
            raise ScenarioError(where, f"not a state the design knows: {err}") from None
    return DriveSetup(str(m["iface"]), index, name, loaded, state)


def _entry(data: object, path: str) -> metadata_xml.Entry:
    m = _mapping(data, path)
    _only(m, path, _ENTRY_KEYS)
    state = m.get("state")
    if state is not None and state not in (metadata_xml.LOADING, metadata_xml.EJECTING):
        raise ScenarioError(_join(path, "state"),
                            f"expected loading, ejecting or null, got {state!r}")
    volume = None
    if m.get("pdiv") is not None:
        where = _join(path, "pdiv")
        pm = _mapping(m["pdiv"], where)
        _only(pm, where, VolumeRef.KEYS)
        volume = _pdiv(pm, where)
    if state == metadata_xml.LOADING and volume is None:
        raise ScenarioError(_join(path, "pdiv"), "a loading entry needs a pdiv")
    return state, volume


def _step(data: object, path: str) -> Step:
    m = _mapping(data, path)
    _only(m, path, _STEP_KEYS)
    ops = [op for op in _STEP_OPS if op in m]
    if len(ops) != 1:
        raise ScenarioError(path, "a step needs exactly one of changeCD, recover; got "
                            + (", ".join(ops) or "none"))
    op = ops[0]
    where = _join(path, op)
    unchecked = _bool(m, "unchecked", path)
    if op == "recover":
        if m[op] is not None and _mapping(m[op], where):
            _only(_mapping(m[op], where), where, ())
        args: Mapping[str, Any] = {}
    else:
        args = _change_cd(m[op], where, unchecked)
    given = [key for key in _INJECTIONS if m.get(key) is not None]
    if len(given) > 1:
        raise ScenarioError(_join(path, given[1]),
                            f"a step carries one of {', '.join(_INJECTIONS)}; got "
                            + " and ".join(given))
    fail = crash = None
    if given:
        point = _at(m, given[0], path)
        if given[0].startswith("fail"):
            fail = point
        else:
            crash = point
    effect: Effect = "before"
    if m.get("fail_effect") is not None:
        if fail is None:
            raise ScenarioError(_join(path, "fail_effect"), "needs fail_at_call or fail_at")
        if m["fail_effect"] not in ("before", "after"):
            raise ScenarioError(_join(path, "fail_effect"),
                                f"expected before or after, got {m['fail_effect']!r}")
        effect = m["fail_effect"]
    return Step(op, args, fail, effect, crash, _optional_str(m, "note", path))


def _at(m: Mapping[str, Any], key: str, path: str) -> At:
    """A fault point: ``*_call: N`` (the step's N-th port call), or ``{call, occurrence}``
    (the occurrence-th call of ``<port>.<method>`` within the step)."""
    where = _join(path, key)
    if key.endswith("_call"):
        return At(number=_count(m[key], where))
    point = _mapping(m[key], where)
    _only(point, where, ("call", "occurrence"))
    if "call" not in point:
        raise ScenarioError(_join(where, "call"), "missing")
    call = point["call"]
    if call not in CALL_NAMES:
        raise ScenarioError(_join(where, "call"), f"unknown call {str(call)[:80]!r}; "
                            f"expected one of {', '.join(CALL_NAMES)}")
    occurrence = 1
    if point.get("occurrence") is not None:
        occurrence = _count(point["occurrence"], _join(where, "occurrence"))
    return At(call, occurrence)


def _change_cd(data: object, path: str, unchecked: bool) -> dict[str, Any]:
    """The request as the engine sends it. Checked like the vdsm API checks it, unless the
    step is ``unchecked`` (to simulate the engine sending bad input)."""
    if unchecked:
        return dict(data) if isinstance(data, Mapping) else {"vmID": None, "cdromspec": data}
    m = _mapping(data, path)
    _only(m, path, ("vmID", "cdromspec"))
    for key in ("vmID", "cdromspec"):
        if key not in m:
            raise ScenarioError(_join(path, key), "missing")
    try:
        ChangeCdRequest.parse(m["vmID"], m["cdromspec"])
    except InvalidParameter as err:
        field = err.field
        if not field.startswith(("vmID", "cdromspec")):
            field = f"cdromspec.{field}"
        raise ScenarioError(_join(path, field), err.reason) from None
    except CdromError:
        pass  # a well-formed request the API refuses (e.g. a network CD): an outcome
    return {"vmID": m["vmID"], "cdromspec": m["cdromspec"]}


# --- Field helpers -------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(path, f"expected a mapping, got {_kind(value)}")
    return value


def _list(value: object, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ScenarioError(path, f"expected a list, got {_kind(value)}")
    return value


def _only(m: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
    for key in m:
        if key not in allowed:
            hint = f"; expected one of {', '.join(allowed)}" if allowed else ""
            raise ScenarioError(_join(path, str(key)), f"unknown key{hint}")


def _optional_str(m: Mapping[str, Any], key: str, path: str) -> str | None:
    value = m.get(key)
    if value is not None and not isinstance(value, str):
        raise ScenarioError(_join(path, key), f"expected a string, got {_kind(value)}")
    return value


def _bool(m: Mapping[str, Any], key: str, path: str) -> bool:
    value = m.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ScenarioError(_join(path, key), f"expected true or false, got {value!r}")
    return value


def _count(value: object, path: str) -> int:
    """A call number or occurrence: an integer from 1 to MAX_CALL."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(path, f"expected an integer from 1 to {MAX_CALL}, got "
                            f"{_shown(value)}")
    if not 1 <= value <= MAX_CALL:
        shown = value if -MAX_CALL <= value <= 10 * MAX_CALL else "too large"
        raise ScenarioError(path, f"expected an integer from 1 to {MAX_CALL}, got {shown}")
    return value


def _shown(value: object) -> str:
    return repr(value)[:80] if not isinstance(value, int) else "an integer"


def _uuid(value: object, path: str) -> str:
    try:
        return parse_uuid(value, path)
    except InvalidParameter as err:
        raise ScenarioError(path, err.reason) from None


def _pdiv(m: Mapping[str, Any], path: str) -> VolumeRef:
    values = []
    for key in VolumeRef.KEYS:
        if key not in m:
            raise ScenarioError(_join(path, key), "missing")
        values.append(_uuid(m[key], _join(path, key)))
    return VolumeRef(*values)


def _absolute_path(value: object, path: str) -> str:
    try:
        return LoadPath.parse(value).path
    except InvalidParameter as err:
        raise ScenarioError(path, err.reason) from None
