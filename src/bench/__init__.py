"""``ovirt-cdrom bench``: how fast the core is, and what it costs next to libvirt.

``memory`` measures the core over the in-memory host (flow rates, port calls per flow,
recovery time against VM count); ``real`` measures a change on a real QEMU VM through the
libvirt adapters against the bare libvirt calls it needs. ``run`` gathers both into the
public report (see ``docs/performance.md`` for the keys).
"""
