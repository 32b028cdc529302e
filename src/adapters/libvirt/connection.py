"""The VMs' libvirt domains, and the one retry policy of every libvirt call on them.

The libvirt adapters ask a :class:`Domains` for a domain by VM and run a function on its
handle (:meth:`Domains.run`). :class:`LibvirtConnection` is ours: one lazily opened
``virConnect`` per process, and the domains' handles kept by UUID (the most recently used
:data:`MAX_DOMAINS`), so that a port call pays no ``lookupByUUIDString``. A kept handle
carries a memo: what the adapters learnt about a running domain and need not ask on every
call (whether it is persistent, the drives' ``<disk>`` elements from the last domain XML).

The retry policy, in one place (:meth:`LibvirtConnection.run`): when a call fails in a way
that stale knowledge explains (the connection died, a kept handle's domain is gone, libvirt
refuses a change built from remembered knowledge as one it cannot make), everything known
about the domain is dropped (the connection too, if it died) and the call is run once more,
fresh. So a call runs at most twice, and every function run here must be safe to run twice:
ours are (a forced media change, a whole-block metadata write, and reads). Inside vdsm the
domains are vdsm's (``adapters/vdsm/domains.py``) and nothing is retried.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from ovirt_cdrom.domain.errors import (
    CdromError,
    HypervisorError,
    HypervisorTimeout,
    NoSuchVM,
)
from ovirt_cdrom.domain.model import VmId

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_URI = "qemu:///system"
MAX_DOMAINS = 4096  # domain handles kept per connection, most recently used first

# Errors after which the connection may be dead; isAlive() decides.
_CONNECTION_ERRORS = frozenset({
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
})
# A kept handle or its memo may be stale: libvirt says the domain is gone, or refuses a
# change as one it cannot make (a domain undefined, or re-created with another drive).
_STALE_ERRORS = frozenset({
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_OPERATION_INVALID,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
})
# The call may have taken effect without answering.
_TIMEOUT_ERRORS = frozenset({
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
})

LibvirtError: type[Exception] = libvirt.libvirtError


def error_code(err: Exception) -> int | None:
    code: Any = err.get_error_code() if isinstance(err, libvirt.libvirtError) else None
    return int(code) if code is not None else None


def map_error(err: Exception, what: str, error: type[CdromError] = HypervisorError,
              vm: object = None) -> CdromError:
    """A libvirt error as the domain's typed error (``error`` for plain refusals)."""
    code = error_code(err)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NoSuchVM(str(vm) if vm is not None else str(err))
    if code in _TIMEOUT_ERRORS:
        return HypervisorTimeout(f"{what}: {err}")
    return error(f"{what}: {err}")


@dataclass(slots=True)
class Handle:
    """A domain's ``virDomain`` (or vdsm's object with its methods) and what is known of
    it: the memo lives exactly as long as the handle is kept."""

    dom: Any
    memo: dict[str, Any] = field(default_factory=dict)

    def persistent(self) -> bool:
        """Whether the domain is persistent: asked once per handle, then remembered.

        A running domain can be defined or undefined meanwhile. Undefined: libvirt refuses
        a change that names the configuration, and the retry policy asks again. Defined: the
        changes keep going to the live domain only until the handle is dropped; vdsm's VMs
        are transient and never defined while they run (D21).
        """
        known = self.memo.get("persistent")
        if known is None:
            known = self.memo["persistent"] = bool(self.dom.isPersistent())
        return bool(known)


class Domains(Protocol):
    """Where the libvirt adapters find the VMs' domains."""

    def run(self, vm: VmId, fn: Callable[[Handle], T]) -> T:
        """``fn`` on the domain of ``vm``; NoSuchVM when there is none. libvirt errors
        propagate (the adapters map them)."""

    def running(self) -> list[VmId]:
        """The VMs running on this host."""


def _silence(_ctx: object, _err: object) -> None:
    """libvirt's error callback: errors reach us as exceptions, not as stderr noise."""


class LibvirtConnection:
    """A lazily opened, self-healing ``virConnect`` and the domains' kept handles."""

    def __init__(self, uri: str = DEFAULT_URI,
                 opener: Callable[[str], Any] | None = None) -> None:
        self.uri = uri
        self._opener: Callable[[str], Any] = opener or libvirt.open
        self._lock = threading.Lock()
        self._conn: Any = None
        self._handles: OrderedDict[str, Handle] = OrderedDict()  # by UUID, LRU first
        self.opened = 0  # how many times a connection was opened (for tests and logs)
        self.lookups = 0  # how many times a domain was looked up by UUID (for tests)

    def run(self, vm: VmId, fn: Callable[[Handle], T]) -> T:
        """``fn`` on the domain of ``vm``, retried once, fresh, when stale knowledge
        explains its failure (see the module's docstring)."""
        conn = self._connection()
        handle, kept = None, False
        try:
            handle, kept = self._handle(conn, vm.value)
            return fn(handle)
        except libvirt.libvirtError as err:
            code = error_code(err)
            dead = code in _CONNECTION_ERRORS and self._is_dead(conn)
            if not dead and not (kept and code in _STALE_ERRORS):
                raise
            log.debug("libvirt call on %s failed (%s); once more, knowing nothing", vm, err)
            self._forget(conn, vm.value, handle, dead)
        conn = self._connection()
        return fn(self._handle(conn, vm.value)[0])

    def running(self) -> list[VmId]:
        conn = self._connection()
        try:
            found = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as err:
            if not (error_code(err) in _CONNECTION_ERRORS and self._is_dead(conn)):
                raise
            self._forget(conn, None, None, dead=True)
            conn = self._connection()
            found = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        with self._lock:
            if conn is self._conn:  # recovery then asks each VM by UUID: keep the handles
                for dom in found:
                    uuid = dom.UUIDString()
                    kept = self._handles.get(uuid)
                    if kept is None or kept.dom is not dom:
                        self._handles[uuid] = Handle(dom)
                    self._handles.move_to_end(uuid)
                self._evict()
        return [VmId.parse(dom.UUIDString()) for dom in found]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._handles.clear()
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                log.debug("Closing the libvirt connection failed", exc_info=True)

    # --- internals -------------------------------------------------------------------

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None:
                # libvirt prints every error to stderr unless a handler is set.
                libvirt.registerErrorHandler(_silence, None)
                try:
                    conn = self._opener(self.uri)
                except libvirt.libvirtError as err:
                    raise HypervisorError(
                        f"cannot connect to libvirt at {self.uri}: {err}") from None
                if conn is None:  # very old bindings returned None instead of raising
                    raise HypervisorError(f"cannot connect to libvirt at {self.uri}")
                self._conn = conn
                self.opened += 1
                log.info("Connected to libvirt at %s", self.uri)
            return self._conn

    def _handle(self, conn: Any, uuid: str) -> tuple[Handle, bool]:
        """The domain's handle on ``conn``, and whether it was a kept one."""
        with self._lock:
            kept = self._handles.get(uuid) if conn is self._conn else None
            if kept is not None:
                self._handles.move_to_end(uuid)
                return kept, True
        handle = Handle(conn.lookupByUUIDString(uuid))
        self.lookups += 1
        with self._lock:
            if conn is self._conn:
                self._handles[uuid] = handle
                self._evict()
        return handle, False

    def _forget(self, conn: Any, uuid: str | None, handle: Handle | None, dead: bool) -> None:
        with self._lock:
            if conn is not self._conn:
                return  # another thread already replaced it
            if not dead:
                if uuid is not None and self._handles.get(uuid) is handle:
                    del self._handles[uuid]
                return
            log.warning("libvirt connection to %s lost; reconnecting", self.uri)
            self._conn = None
            self._handles.clear()
        try:
            conn.close()
        except libvirt.libvirtError:
            log.debug("Closing a dead libvirt connection failed", exc_info=True)

    def _evict(self) -> None:
        while len(self._handles) > MAX_DOMAINS:
            self._handles.popitem(last=False)

    @staticmethod
    def _is_dead(conn: Any) -> bool:
        try:
            return not conn.isAlive()
        except libvirt.libvirtError:
            return True
