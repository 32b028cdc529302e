"""Wiring: the only module (with the entry points) that knows dependency_injector.

``Core`` declares the three ports as dependencies and builds the service and the vdsm
API on them. ``Application`` picks an adapter set by configuration (``adapters``:
``memory``, the default) and hands it to ``Core``. Nothing is built at import time:
call :func:`build` (or instantiate ``Application`` and set its config) and ask for
``core.service()``.

Configuration keys (a mapping, a YAML file named by ``OVIRT_CDROM_CONFIG``, or
environment variables ``OVIRT_CDROM_<KEY>`` which win):

* ``adapters``: ``memory``
* ``metadata_encoding``: ``design`` (default) or ``vdsm-4.50``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dependency_injector import containers, providers
from ovirt_cdrom.adapters import metadata_xml
from ovirt_cdrom.adapters.memory import (
    MemoryHost,
    MemoryHypervisor,
    MemoryMetadataRepository,
    MemoryVolumeActivator,
)
from ovirt_cdrom.adapters.vdsm_api import VdsmApi
from ovirt_cdrom.ports import Hypervisor, MetadataRepository, VolumeActivator
from ovirt_cdrom.service import CdromService

DEFAULTS: dict[str, Any] = {
    "adapters": "memory",
    "metadata_encoding": metadata_xml.Encoding.DESIGN.value,
}
ENV_PREFIX = "OVIRT_CDROM_"
CONFIG_ENV = "OVIRT_CDROM_CONFIG"


class Core(containers.DeclarativeContainer):
    """The product over whatever adapters it is given."""

    hypervisor = providers.Dependency(instance_of=Hypervisor)  # type: ignore[type-abstract]
    volumes = providers.Dependency(instance_of=VolumeActivator)  # type: ignore[type-abstract]
    metadata = providers.Dependency(instance_of=MetadataRepository)  # type: ignore[type-abstract]

    service = providers.Singleton(CdromService, hypervisor, volumes, metadata)
    api = providers.Singleton(VdsmApi, service)


class MemoryAdapters(containers.DeclarativeContainer):
    """A whole host in memory (the default): the simulator and demos run on it."""

    config = providers.Configuration()

    host = providers.Singleton(MemoryHost)
    hypervisor = providers.Singleton(MemoryHypervisor, host)
    volumes = providers.Singleton(MemoryVolumeActivator, host)
    metadata = providers.Singleton(
        MemoryMetadataRepository, host,
        encoding=config.metadata_encoding.as_(metadata_xml.Encoding.parse))


class Application(containers.DeclarativeContainer):
    config = providers.Configuration()

    memory = providers.Container(MemoryAdapters, config=config)

    hypervisor = providers.Selector(config.adapters, memory=memory.hypervisor)
    volumes = providers.Selector(config.adapters, memory=memory.volumes)
    metadata = providers.Selector(config.adapters, memory=memory.metadata)

    core = providers.Container(Core, hypervisor=hypervisor, volumes=volumes, metadata=metadata)


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults, then the YAML file named by ``OVIRT_CDROM_CONFIG``, then the
    environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    path = environ.get(CONFIG_ENV)
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a mapping of settings")
        config.update(loaded)
    for key in DEFAULTS:
        env_key = ENV_PREFIX + key.upper()
        if env_key in environ:
            config[key] = environ[env_key]
    if overrides:
        config.update(overrides)
    adapters = config["adapters"]
    if adapters not in ("memory",):
        raise ValueError(f"unknown adapter set {adapters!r}; expected 'memory'")
    metadata_xml.Encoding.parse(config["metadata_encoding"])
    return config


def build(overrides: Mapping[str, Any] | None = None,
          environ: Mapping[str, str] | None = None) -> Application:
    """A configured application container."""
    app = Application()
    app.config.from_dict(load_config(overrides, environ))
    return app
