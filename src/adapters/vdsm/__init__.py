"""Adapters over vdsm's own objects: its storage dispatcher and the libvirt domains it holds.

Inside vdsm the product runs no LVM command and opens no libvirt connection of its own:
``storage.VdsmVolumeActivator`` speaks vdsm's ``prepareImage``/``teardownImage`` verbs, and
``domain`` reads and changes the libvirt domain object vdsm already holds. The one-call
bootstrap is :func:`ovirt_cdrom.embedding.bootstrap_vdsm` (it goes through the container,
which adapters may not import).
"""
