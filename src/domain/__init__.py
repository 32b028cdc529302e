"""The pure core: value objects, the CD-ROM slot, the flows and the recovery decisions."""
