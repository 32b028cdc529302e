"""Wiring: the only module (with the entry points) that knows dependency_injector.

``Core`` declares the three ports as dependencies and builds the service and the vdsm
API on them. ``Application`` picks an adapter set by configuration (``adapters``:
``memory``, the default, or ``libvirt``) and hands it to ``Core``. Nothing is built at import time:
call :func:`build` (or instantiate ``Application`` and set its config) and ask for
``core.service()``.

Configuration keys, from (each later source winning) the defaults, a YAML file named by
``OVIRT_CDROM_CONFIG``, environment variables ``OVIRT_CDROM_<KEY>``, and the caller's own
settings (a scenario's keys, vdsm's arguments); see :func:`load_config`:

* ``adapters``: ``memory`` (default) or ``libvirt`` (a real host: libvirt for the VMs
  and their metadata, volumes activated as chosen by ``activation``), or ``vdsm`` (inside
  vdsm, over its domains and storage dispatcher: only :func:`build_vdsm` builds it)
* ``activation`` (``libvirt`` only): ``lvm`` (default; LVM volumes of block storage
  domains) or ``loop`` (image files ``<storage_root>/<sd>/<img>/<vol>`` on loop devices)
* ``libvirt_uri``: default ``qemu:///system``
* ``storage_root`` (``loop`` only): the folder of the image files
* ``run_root``: the folder under which volumes are linked at vdsm's paths
  (``run/vdsm/storage``, ``rhev/data-center/mnt/blockSD``); default ``/``
* ``lvm_devices`` (``lvm`` only): devices to look for a storage domain's physical volumes
  on, besides the host's multipath devices (a list, or one string separated by commas or
  spaces); default none
* ``link_user``, ``link_group``, ``link_dir_mode``: owner (names or numbers) and folder
  mode of the links and folders made at vdsm's paths; default ``vdsm``, ``kvm``, ``0755``
  (vdsm's), the running user where the host has no such user
* ``metadata_encoding``: ``vdsm-4.50`` (default: vdsm 4.50's nested ``<ovirt-vm:change>``,
  which vdsm's own metadata reader understands) or ``design`` (the design's two entries)
* ``fault_injection``: ``off`` (default) or ``on``: wrap the ports in the decorators of
  ``adapters/faults.py``, armed by ``fail_at`` (``<port>.<method>[:<occurrence>]``) or
  ``fail_at_call`` (a number), ``fail_effect`` (``before``/``after``), ``crash_at`` or
  ``crash_at_call`` and ``crash_action`` (``raise`` in process, ``sigkill`` for real crashes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from dependency_injector import containers, providers
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.blocklinks import VDSM_GROUP, VDSM_USER, Ownership
from ovirt_cdrom.adapters.faults import (
    At,
    FaultPlan,
    FaultyHypervisor,
    FaultyMetadataRepository,
    FaultyVolumeActivator,
    kill_self,
    raise_crash,
)
from ovirt_cdrom.adapters.loop import LoopVolumeActivator
from ovirt_cdrom.adapters.lvm import LvmVolumeActivator
from ovirt_cdrom.adapters.memory import (
    MemoryHost,
    MemoryHypervisor,
    MemoryMetadataRepository,
    MemoryVolumeActivator,
)
from ovirt_cdrom.adapters.vdsm.storage import OsProbe, VdsmVolumeActivator
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
from ovirt_cdrom.ports import Ports, VolumeActivator
from ovirt_cdrom.service import CdromService

DEFAULTS: dict[str, Any] = {
    "adapters": "memory",
    "activation": "lvm",
    "libvirt_uri": "qemu:///system",
    "storage_root": None,
    "run_root": "/",
    "lvm_devices": "",
    "link_user": VDSM_USER,
    "link_group": VDSM_GROUP,
    "link_dir_mode": "0755",
    # vdsm's own metadata reader shares the block on a real host: it reads this encoding.
    "metadata_encoding": metadata_xml.Encoding.VDSM_450.value,
    "fault_injection": "off",
    "fail_at": None,
    "fail_at_call": None,
    "fail_effect": "before",
    "crash_at": None,
    "crash_at_call": None,
    "crash_action": "raise",
}
_INT_KEYS = ("fail_at_call", "crash_at_call")
_CHOICES = {
    "fault_injection": ("off", "on"),
    "fail_effect": ("before", "after"),
    "crash_action": ("raise", "sigkill"),
    "adapters": ("memory", "libvirt", "vdsm"),
    "activation": ("lvm", "loop"),
}
ENV_PREFIX = "OVIRT_CDROM_"
CONFIG_ENV = "OVIRT_CDROM_CONFIG"


class Core(containers.DeclarativeContainer):
    """The product over whatever adapter set it is given."""

    ports = providers.Dependency(instance_of=Ports)
    hypervisor = ports.provided.hypervisor
    volumes = ports.provided.volumes
    metadata = ports.provided.metadata

    service = providers.Singleton(CdromService, hypervisor, volumes, metadata)
    api = providers.Singleton(VdsmApi, service)


class MemoryAdapters(containers.DeclarativeContainer):
    """A whole host in memory (the default): the simulator and demos run on it."""

    config = providers.Configuration()

    host = providers.Singleton(MemoryHost)
    ports = providers.Singleton(
        Ports, providers.Singleton(MemoryHypervisor, host),
        providers.Singleton(MemoryVolumeActivator, host),
        providers.Singleton(MemoryMetadataRepository, host,
                            config.metadata_encoding.as_(metadata_xml.Encoding.parse)))


# The libvirt adapters are imported when selected, so that a memory-only install (no
# libvirt-python) still runs.
def _libvirt_ports(uri: str, encoding: str, volumes: VolumeActivator) -> Ports:
    from ovirt_cdrom.adapters.libvirt import (  # noqa: PLC0415
        LibvirtConnection,
        LibvirtHypervisor,
        LibvirtMetadataRepository,
    )
    connection = LibvirtConnection(uri)
    return Ports(LibvirtHypervisor(connection), volumes,
                 LibvirtMetadataRepository(connection, encoding))


def _ownership(user: str | int, group: str | int, dir_mode: int) -> Ownership:
    return Ownership.resolve(user, group, dir_mode)


def _lvm_activator(run_root: str, search_devices: list[str],
                   owner: Ownership) -> VolumeActivator:
    return LvmVolumeActivator(Path(run_root), search_devices=search_devices, owner=owner)


def _loop_activator(storage_root: str | None, run_root: str,
                    owner: Ownership) -> VolumeActivator:
    if not storage_root:
        raise ConfigError("activation 'loop' needs storage_root")
    return LoopVolumeActivator(Path(storage_root), Path(run_root), owner=owner)


class LibvirtAdapters(containers.DeclarativeContainer):
    """A real host: one libvirt connection for the VMs and their metadata; volumes
    activated by LVM or, where there is no device-mapper, as loop devices."""

    config = providers.Configuration()

    owner = providers.Singleton(_ownership, config.link_user, config.link_group,
                                config.link_dir_mode)
    volumes = providers.Selector(
        config.activation,
        lvm=providers.Singleton(_lvm_activator, config.run_root, config.lvm_devices, owner),
        loop=providers.Singleton(_loop_activator, config.storage_root, config.run_root,
                                 owner))
    ports = providers.Singleton(_libvirt_ports, config.libvirt_uri, config.metadata_encoding,
                                volumes)


def _vdsm_ports(domains: Any, storage: Any, probe: Any, encoding: str,
                on_written: Callable[[str], None] | None) -> Ports:
    from ovirt_cdrom.adapters.libvirt.hypervisor import LibvirtHypervisor  # noqa: PLC0415
    from ovirt_cdrom.adapters.vdsm.domains import (  # noqa: PLC0415
        VdsmDomainMetadataRepository,
    )
    return Ports(LibvirtHypervisor(domains), VdsmVolumeActivator(storage, probe),
                 VdsmDomainMetadataRepository(domains, encoding, on_written))


class VdsmAdapters(containers.DeclarativeContainer):
    """Inside vdsm, over vdsm's own objects (:func:`build_vdsm` provides them): its
    domains, its storage dispatcher, and what the host's ``/dev`` and files tell."""

    config = providers.Configuration()

    domains: providers.Dependency[Any] = providers.Dependency()
    storage: providers.Dependency[Any] = providers.Dependency()
    probe = providers.Singleton(OsProbe)
    on_written: providers.Object[Callable[[str], None] | None] = providers.Object(None)
    ports = providers.Singleton(_vdsm_ports, domains, storage, probe,
                                config.metadata_encoding, on_written)


def _point(named: str | None, number: int | None) -> At | None:
    if named:
        return At.parse(named)
    return At(number=number) if number else None


def _fault_plan(action: str, fail: At | None, effect: str, crash: At | None) -> FaultPlan:
    plan = FaultPlan(crash=kill_self if action == "sigkill" else raise_crash)
    plan.arm(fail, "after" if effect == "after" else "before", crash)
    return plan


def _faulty(ports: Ports, plan: FaultPlan) -> Ports:
    return Ports(FaultyHypervisor(ports.hypervisor, plan),
                 FaultyVolumeActivator(ports.volumes, plan),
                 FaultyMetadataRepository(ports.metadata, plan))


class Application(containers.DeclarativeContainer):
    config = providers.Configuration()

    memory = providers.Container(MemoryAdapters, config=config)
    libvirt = providers.Container(LibvirtAdapters, config=config)
    vdsm = providers.Container(VdsmAdapters, config=config)

    adapters = providers.Selector(config.adapters, memory=memory.ports,
                                  libvirt=libvirt.ports, vdsm=vdsm.ports)
    fault_plan = providers.Singleton(
        _fault_plan, config.crash_action,
        providers.Callable(_point, config.fail_at, config.fail_at_call), config.fail_effect,
        providers.Callable(_point, config.crash_at, config.crash_at_call))
    ports = providers.Selector(config.fault_injection, off=adapters,
                               on=providers.Singleton(_faulty, adapters, fault_plan))

    core = providers.Container(Core, ports=ports)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key and where the
    value came from (a file, an environment variable, or the caller)."""


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings: ``DEFAULTS``, then the YAML file named by ``OVIRT_CDROM_CONFIG``, then
    the environment's ``OVIRT_CDROM_<KEY>``, then ``overrides`` (the caller's own: a
    scenario's keys, vdsm's arguments); each later source wins. Every value is checked,
    whichever source gave it: a bad one is a :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    source = dict.fromkeys(DEFAULTS, "the default")
    path = environ.get(CONFIG_ENV)
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{CONFIG_ENV}={path}: cannot read it: {err}") from None
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{CONFIG_ENV}={path}: expected a mapping of settings")
        unknown = sorted(str(k) for k in loaded if k not in DEFAULTS)
        if unknown:
            raise ConfigError(f"{CONFIG_ENV}={path}: unknown keys {', '.join(unknown)}")
        config.update(loaded)
        source.update(dict.fromkeys(loaded, path))
    for key in DEFAULTS:
        env_key = ENV_PREFIX + key.upper()
        if env_key in environ:
            config[key] = environ[env_key]
            source[key] = env_key
    if overrides:
        config.update(overrides)
        source.update(dict.fromkeys(overrides, "the caller"))
    try:
        _check(config)
    except _Invalid as err:
        raise ConfigError(f"{err.key} (from {source.get(err.key, 'the caller')}): "
                          f"{err.reason}") from None
    return config


class _Invalid(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def _check(config: dict[str, Any]) -> None:
    """Check and normalise ``config`` in place; raise _Invalid naming the key at fault."""
    for key in _INT_KEYS:
        if config[key] in (None, ""):
            config[key] = None
        else:
            try:
                config[key] = int(config[key])
            except (TypeError, ValueError):
                raise _Invalid(key, f"must be an integer, got {config[key]!r}") from None
    for key, choices in _CHOICES.items():
        if config[key] not in choices:
            raise _Invalid(key, f"must be one of {', '.join(choices)}, got {config[key]!r}")
    for key in ("fail_at", "crash_at"):
        if config[key] in (None, ""):
            config[key] = None
            continue
        try:
            At.parse(str(config[key]))
        except ValueError as err:
            raise _Invalid(key, str(err)) from None
        if config[f"{key}_call"] is not None:
            raise _Invalid(key, f"give {key} or {key}_call, not both")
    try:
        metadata_xml.Encoding.parse(config["metadata_encoding"])
    except ValueError as err:
        raise _Invalid("metadata_encoding", str(err)) from None
    config["lvm_devices"] = _device_list(config["lvm_devices"])
    config["link_dir_mode"] = _mode(config["link_dir_mode"])
    for key in ("link_user", "link_group"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            raise _Invalid(key, f"must be a name or a number, got {value!r}")
    if config["adapters"] == "libvirt" and config["activation"] == "loop" \
            and not config["storage_root"]:
        raise _Invalid("storage_root", "activation 'loop' needs storage_root")


def _device_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list | tuple) and all(isinstance(d, str) for d in value):
        return list(value)
    raise _Invalid("lvm_devices", f"must be a list of device paths, got {value!r}")


def _mode(value: Any) -> int:
    """An octal folder mode: ``"0755"``, ``"0o755"``, or an int (YAML reads 0755 as one)."""
    try:
        mode = value if isinstance(value, int) and not isinstance(value, bool) \
            else int(str(value), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise _Invalid("link_dir_mode", f"must be an octal mode such as 0755, got {value!r}")
    return mode


def build(overrides: Mapping[str, Any] | None = None,
          environ: Mapping[str, str] | None = None) -> Application:
    """A configured application container (the ``vdsm`` profile: see :func:`build_vdsm`)."""
    config = load_config(overrides, environ)
    if config["adapters"] == "vdsm":
        raise ConfigError("adapters 'vdsm' runs inside vdsm, over vdsm's own domains and "
                          "storage dispatcher: build it with "
                          "ovirt_cdrom.embedding.bootstrap_vdsm")
    return _application(config)


def _application(config: Mapping[str, Any]) -> Application:
    app = Application()
    app.config.from_dict(dict(config))
    return app


def build_vdsm(domains: Any, storage: Any, probe: Any = None,
               on_metadata_written: Callable[[str], None] | None = None,
               overrides: Mapping[str, Any] | None = None) -> Application:
    """The application inside vdsm, over vdsm's own objects (see ``ovirt_cdrom.embedding``).

    ``domains`` is a :class:`~ovirt_cdrom.adapters.vdsm.domains.VdsmDomains`, ``storage``
    vdsm's storage dispatcher (None: vdsm runs without storage, every volume operation
    fails), ``probe`` a ``HostProbe`` (default: the host's ``/dev``).
    ``overrides`` win over the environment and ``OVIRT_CDROM_CONFIG``, as everywhere.
    """
    if domains is None:
        raise ConfigError("the vdsm profile needs vdsm's domains")
    app = _application(load_config({**(overrides or {}), "adapters": "vdsm"}))
    app.vdsm.domains.override(providers.Object(domains))
    app.vdsm.storage.override(providers.Object(storage))
    if probe is not None:
        app.vdsm.probe.override(providers.Object(probe))
    app.vdsm.on_written.override(providers.Object(on_metadata_written))
    return app
