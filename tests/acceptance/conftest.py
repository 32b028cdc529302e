"""The acceptance steps: each delegates to the driver (``driver.py``), a thin layer over
the tests' one rig (``tests/rig.py``), or to the rig itself where nothing needs translating.

The scenarios run here on the memory profile with the design's metadata encoding;
``tests/vdsm/test_vdsm_features*.py`` run them again on the vdsm profile in both encodings.
"""

from __future__ import annotations

import pytest
from ovirt_cdrom.adapters.metadata_xml import Encoding
from ovirt_cdrom.service import RecoveryReport
from pytest_bdd import given, parsers, then, when
from rig import SUCCESS, Rig, legacy_path

from .driver import AcceptanceDriver, Concurrent, Observed, Outcome

_NTH = r'the (?:next|(?P<nth>\d+)(?:st|nd|rd|th)) "(?P<call>[\w.]+)" call'


def _nth(nth: str | None) -> int:
    return int(nth) if nth else 1


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.replace(" and ", ",").split(",") if p.strip()]


# Underscored so that the modules which star-import these steps with a driver of their own
# (tests/vdsm) do not import this one too.
@pytest.fixture(name="driver")
def _driver() -> AcceptanceDriver:
    return AcceptanceDriver(Rig(profile="memory", encoding=Encoding.DESIGN))


# --- Given -------------------------------------------------------------------------------


@given(parsers.parse("a host with the ISO volumes {names}"))
def _(driver: AcceptanceDriver, names: str) -> None:
    """A host whose block storage has these ISO volumes, all inactive."""
    driver.add_isos(_list(names))


@given(parsers.parse('the host writes metadata in the "{encoding}" encoding'))
def _(driver: AcceptanceDriver, encoding: str) -> None:
    """The service restarts configured with ``metadata_encoding: <encoding>``."""
    driver.rig.restart(Encoding.parse(encoding))


@given(parsers.parse('a running VM "{vm}" with an empty CD-ROM sdc'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """A VM with an empty sata CD-ROM and the rest of oVirt's metadata."""
    driver.add_vm(vm)


@given(parsers.parse('"{vm}" holds "{iso}"'))
def _(driver: AcceptanceDriver, vm: str, iso: str) -> None:
    """The engine loaded ``iso`` into the VM earlier."""
    driver.hold(vm, driver.volume_spec(iso))


@given(parsers.parse('"{vm}" holds the legacy ISO "{name}"'))
def _(driver: AcceptanceDriver, vm: str, name: str) -> None:
    """The engine loaded an ISO by path (old ISO domain) earlier."""
    driver.hold(vm, driver.legacy_spec(name))


@given(parsers.parse("only the legacy ISO files {names} exist"))
def _(driver: AcceptanceDriver, names: str) -> None:
    """The old ISO domain holds only these files."""
    driver.rig.only_files(legacy_path(n) for n in _list(names))


@given(parsers.parse('"{vm}" is migrating'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """The VM is being migrated to another host."""
    driver.rig.migrating(driver.vm(vm))


@given(parsers.re(_NTH + r' fails with "(?P<kind>[^"]+)"(?P<after> after taking effect)?'))
def _(driver: AcceptanceDriver, nth: str | None, call: str, kind: str, after: str | None) -> None:
    """That port call of the next step fails (before it takes effect, or after: a timeout)."""
    driver.fail(call, kind, "after" if after else "before", _nth(nth))


@given(parsers.re(r'every "(?P<call>[\w.]+)" call(?P<later> after the first)? fails '
                  r'with "(?P<kind>[^"]+)"'))
def _(driver: AcceptanceDriver, call: str, later: str | None, kind: str) -> None:
    """Every such call of the next step (but the first, if so told) fails."""
    driver.fail(call, kind, occurrence=2 if later else 1, every=True)


@given(parsers.re(_NTH + r' crashes the host (?P<effect>before|after) it takes effect'))
def _(driver: AcceptanceDriver, nth: str | None, call: str, effect: str) -> None:
    """The process dies at that port call of the next step."""
    driver.crash(call, "after" if effect == "after" else "before", _nth(nth))


@given(parsers.parse('the metadata of "{vm}" is observed at each "{call}" call'),
       target_fixture="observed")
def _(driver: AcceptanceDriver, vm: str, call: str) -> Observed:
    """Record the VM's CD-ROM entries whenever that port call starts."""
    return driver.observe(call, vm)


@given("the host state is recorded", target_fixture="before")
def _(driver: AcceptanceDriver) -> str:
    """Everything a call could change on the host: trays, volumes, metadata."""
    return driver.rig.snapshot()


@given(parsers.parse('the CD-ROM metadata of "{vm}" reads "{entries}"'))
def _(driver: AcceptanceDriver, vm: str, entries: str) -> None:
    """The CD-ROM entries an interrupted operation left."""
    driver.set_entries(vm, entries)


@given(parsers.parse('the CD-ROM element of "{vm}" is what vdsm 4.50 left:'))
def _(driver: AcceptanceDriver, vm: str, docstring: str) -> None:
    """vdsm 4.50's nested ``<ovirt-vm:change>`` encoding, as an upgraded host has it."""
    driver.set_vdsm450_element(vm, docstring)


@given(parsers.parse('the tray of "{vm}" holds "{tray}"'))
def _(driver: AcceptanceDriver, vm: str, tray: str) -> None:
    """What the VM's drive holds when the process starts again."""
    driver.set_tray(vm, tray)


@given(parsers.parse('the active volumes are "{active}"'))
def _(driver: AcceptanceDriver, active: str) -> None:
    """Which ISO volumes are active on the host when the process starts again."""
    driver.set_active(_list(active) if active != "none" else [])


# --- When --------------------------------------------------------------------------------


@when(parsers.parse('the engine inserts "{iso}" into "{vm}"'), target_fixture="outcome")
@when(parsers.parse('the engine changes the CD of "{vm}" to "{iso}"'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str, iso: str) -> Outcome:
    """VM.changeCD with the ISO by PDIV, as the engine sends it."""
    return driver.change_cd(driver.vm(vm), driver.volume_spec(iso))


@when(parsers.parse('the engine ejects the CD of "{vm}"'), target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str) -> Outcome:
    """VM.changeCD with ``drive_spec: null``."""
    return driver.change_cd(driver.vm(vm), driver.volume_spec(None))


@when(parsers.parse('the engine loads the legacy ISO "{name}" into "{vm}" by path'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str, name: str) -> Outcome:
    """VM.changeCD with the legacy ``path`` (an old ISO domain)."""
    return driver.change_cd(driver.vm(vm), driver.legacy_spec(name))


@when(parsers.parse('the engine loads "{iso}" into "{vm}" by its {form} path'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str, iso: str, form: str) -> Outcome:
    """VM.changeCD with the legacy ``path`` naming a storage domain's volume."""
    return driver.change_cd(driver.vm(vm), driver.volume_path_spec(iso, form))


@when(parsers.parse('the engine ejects the CD of "{vm}" by an empty path'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str) -> Outcome:
    """VM.changeCD with ``path: ""``."""
    return driver.change_cd(driver.vm(vm), driver.legacy_spec(None))


@when(parsers.parse('the engine inserts "{iso}" into "{vm}" with {field} set to {value}'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str, iso: str, field: str, value: str) -> Outcome:
    """VM.changeCD with one field of an otherwise valid request replaced."""
    return driver.change_cd_mutated(vm, iso, field, value)


@when(parsers.parse('the engine loads a legacy ISO into "{vm}" with {field} set to {value}'),
      target_fixture="outcome")
def _(driver: AcceptanceDriver, vm: str, field: str, value: str) -> Outcome:
    """VM.changeCD by path with one field of an otherwise valid request replaced."""
    return driver.change_cd_mutated(vm, None, field, value)


@when(parsers.parse('the engine changes the CD of "{vm}" to "{iso}" twice at the same time'),
      target_fixture="concurrent")
def _(driver: AcceptanceDriver, vm: str, iso: str) -> Concurrent:
    """Two identical calls; the second arrives while the first prepares the volume."""
    return driver.concurrent_change(vm, iso)


@when(parsers.parse('the engine inserts "{iso}" into "{vm}" and, just before it loads, '
                    'ejects the CD of "{other}"'), target_fixture="concurrent")
def _(driver: AcceptanceDriver, vm: str, iso: str, other: str) -> Concurrent:
    """Two drives share a volume: one ejects it between the other's prepare and load."""
    return driver.change_during(vm, iso, "hypervisor.load", other)


@when("the host restarts and recovers", target_fixture="report")
def _(driver: AcceptanceDriver) -> RecoveryReport:
    """A fresh service over the same host runs ``recover_all()``, as at vdsm start."""
    return driver.restart_and_recover()


@when("the host works normally again")
def _(driver: AcceptanceDriver) -> None:
    """No scripted failure remains."""
    driver.heal()


# --- Then --------------------------------------------------------------------------------


@then("the call succeeds")
def _(outcome: Outcome) -> None:
    """vdsm's success answer."""
    assert outcome.answer == SUCCESS, outcome


@then(parsers.parse("the call fails with code {code:d}"))
def _(outcome: Outcome, code: int) -> None:
    """vdsm's error answer with that code and a message."""
    assert outcome.answer is not None and outcome.answer.get("code") == code, outcome
    assert set(outcome.answer) == {"code", "message"} and outcome.answer["message"], outcome


@then("the call never returns because the host crashed")
def _(outcome: Outcome) -> None:
    """The scripted crash happened during the call."""
    assert outcome.crashed, outcome


@then(parsers.parse('"{vm}" shows "{iso}"'))
def _(driver: AcceptanceDriver, vm: str, iso: str) -> None:
    """The VM's drive holds that ISO (``virsh domblklist``), opened the right way."""
    assert driver.shows(vm) == iso


@then(parsers.parse('the tray of "{vm}" still holds "{tray}"'))
def _(driver: AcceptanceDriver, vm: str, tray: str) -> None:
    """Recovery never changes what the VM holds."""
    assert driver.shows(vm) == tray


@then(parsers.parse('"{vm}" shows no CD'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """The VM's drive is empty (``virsh domblklist`` shows no ISO)."""
    assert driver.shows(vm) == "empty"


@then(parsers.parse('the metadata of "{vm}" names "{entries}"'))
def _(driver: AcceptanceDriver, vm: str, entries: str) -> None:
    """The VM's CD-ROM entries, in the design's terms."""
    assert driver.entries(vm) == entries


@then(parsers.parse('the metadata of "{vm}" keeps only the empty CD-ROM element'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """The CD's metadata was removed: ``<ovirt-vm:device devtype="disk" name="sdc"/>``."""
    assert driver.cd_element_is_empty(vm), driver.entries(vm)


@then(parsers.parse('the metadata of "{vm}" has no state marker'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """No ``state`` attribute and no nested ``<change>`` stays behind."""
    assert driver.markers(vm) == []


@then(parsers.parse('the volume "{iso}" is active'))
def _(driver: AcceptanceDriver, iso: str) -> None:
    """The ISO volume was activated on the host."""
    assert iso in driver.active()


@then(parsers.parse('the volume "{iso}" is not active'))
def _(driver: AcceptanceDriver, iso: str) -> None:
    """The ISO volume was deactivated on the host (or never activated)."""
    assert iso not in driver.active()


@then(parsers.parse('the active volumes are exactly "{active}"'))
def _(driver: AcceptanceDriver, active: str) -> None:
    """Which ISO volumes are active on the host, all of them."""
    assert driver.active() == set(_list(active) if active != "none" else [])


@then(parsers.parse('the unrelated metadata of "{vm}" is unchanged'))
def _(driver: AcceptanceDriver, vm: str) -> None:
    """Every metadata element that is not the CD-ROM entry survives, unchanged in meaning."""
    assert driver.unrelated_unchanged(vm)


@then("nothing leaks and nothing lies")
def _(driver: AcceptanceDriver) -> None:
    """No unused active volume, no marker, metadata names what every VM holds."""
    assert driver.rig.violations(settled=True) == []


@then(parsers.parse("the metadata was written {n:d} times"))
def _(outcome: Outcome, n: int) -> None:
    """How many times the call wrote the VM's metadata."""
    assert outcome.count("metadata.write") == n, outcome.calls


@then(parsers.parse("the media was switched {n:d} times"))
def _(outcome: Outcome, n: int) -> None:
    """How many media updates the call sent to the hypervisor."""
    assert outcome.count("hypervisor.load") + outcome.count("hypervisor.eject") == n, \
        outcome.calls


@then(parsers.parse('at each "{call}" call the metadata read "{entries}"'))
def _(observed: Observed, call: str, entries: str) -> None:
    """What the metadata said when that adapter call started (the design's markers)."""
    assert observed.call == call and observed.seen == [entries], observed


@then(parsers.parse("each time the metadata had {n:d} CD-ROM element"))
@then(parsers.parse("each time the metadata had {n:d} CD-ROM elements"))
def _(observed: Observed, n: int) -> None:
    """How many ``<ovirt-vm:device name="sdc">`` elements encoded the entries."""
    assert observed.elements and set(observed.elements) == {n}, observed


@then("the host state is unchanged")
def _(driver: AcceptanceDriver, before: str) -> None:
    """Trays, volumes and metadata are exactly as before the call."""
    assert driver.rig.snapshot() == before


@then(parsers.parse('recovery applied the design\'s case "{case}"'))
def _(driver: AcceptanceDriver, case: str) -> None:
    """The row of the design's recovery section (RECOVERY_TABLE) that recovery used."""
    assert driver.recovery_cases() == [case]


@then("recovery found nothing to do")
def _(driver: AcceptanceDriver) -> None:
    """Every drive was already consistent."""
    assert driver.recovery_cases() == []


@then("recovery is clean")
def _(report: RecoveryReport) -> None:
    """Every drive of every VM converged; no error."""
    assert report.clean, report


@then("recovery is not clean")
def _(report: RecoveryReport) -> None:
    """Recovery reports that leftovers remain for a later retry."""
    assert not report.clean, report


@then("both calls succeed")
def _(concurrent: Concurrent) -> None:
    """The engine's retry is not an error."""
    assert concurrent.first.answer == SUCCESS, concurrent
    assert concurrent.second is not None and concurrent.second.answer == SUCCESS, concurrent


@then("the second call waited for the first")
def _(concurrent: Concurrent) -> None:
    """Calls on one drive are serialized (docs/decisions.md D12)."""
    assert not concurrent.overlapped


@then(parsers.parse("the media was loaded {n:d} time"))
def _(concurrent: Concurrent, n: int) -> None:
    """The second call found the CD loaded and did nothing (a no-op)."""
    assert concurrent.calls.count("hypervisor.load") == n, concurrent.calls
