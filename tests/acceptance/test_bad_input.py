"""Bad input: a typed error with vdsm's code, and nothing on the host changes."""

from pytest_bdd import scenarios

scenarios("bad_input.feature")
