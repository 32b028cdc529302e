"""The design's "VM recovery flow", and recovery after a crash at every step."""

from pytest_bdd import scenarios

scenarios("recovery.feature")
