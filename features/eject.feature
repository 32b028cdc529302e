@eject
Feature: VM with loaded CD, eject CD
  The engine sends changeCD with an empty PDIV (drive_spec: null). Each numbered step of
  the design's flow (docs/design.md, "Eject (steps 1-5)"), and each "if failed" branch, is
  a scenario.

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc
    And "vm1" holds "fedora"

  Scenario: Eject the CD (steps 1 to 5)
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And the active volumes are exactly "none"
    And the unrelated metadata of "vm1" is unchanged
    And the metadata was written 2 times
    And the media was switched 1 times

  Scenario: Step 2 marks the loaded CD with state="ejecting" before the tray is emptied
    Given the metadata of "vm1" is observed at each "hypervisor.eject" call
    When the engine ejects the CD of "vm1"
    Then at each "hypervisor.eject" call the metadata read "ejecting:fedora"
    And the call succeeds

  Scenario: Step 2 fails to write the metadata: the CD stays and nothing changes
    Given the host state is recorded
    And the next "metadata.write" call fails with "metadata error"
    When the engine ejects the CD of "vm1"
    Then the call fails with code 100
    And the host state is unchanged

  Scenario: Step 3 eject fails: the state attribute is removed and the call fails
    Given the next "hypervisor.eject" call fails with "hypervisor error"
    When the engine ejects the CD of "vm1"
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is active
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 3 eject times out but took effect: the drive is read back and the call succeeds
    Given the next "hypervisor.eject" call fails with "timeout" after taking effect
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And nothing leaks and nothing lies

  Scenario: Step 4 teardown finds the volume used by another VM: the call succeeds, the volume stays
    Given a running VM "vm2" with an empty CD-ROM sdc
    And "vm2" holds "fedora"
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And "vm2" shows "fedora"
    And the metadata of "vm2" names "fedora"
    And the volume "fedora" is active
    And the unrelated metadata of "vm1" is unchanged
    And the unrelated metadata of "vm2" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 4 teardown reports the volume in use: that is not a failure
    Given the next "volumes.teardown" call fails with "in use"
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element

  Scenario: Step 4 teardown fails otherwise: the call succeeds, the ejecting marker stays for recovery
    Given the next "volumes.teardown" call fails with "storage error"
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the volume "fedora" is active
    And the metadata of "vm1" names "ejecting:fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "eject.2"
    And the volume "fedora" is not active
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged

  Scenario: Step 5 cannot remove the drive spec: the call still succeeds, recovery removes it
    Given the 2nd "metadata.write" call fails with "metadata error"
    When the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the volume "fedora" is not active
    And the metadata of "vm1" names "ejecting:fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "eject.3"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And nothing leaks and nothing lies

  Scenario: Ejecting an empty tray is a successful no-op
    When the engine ejects the CD of "vm1"
    And the engine ejects the CD of "vm1"
    Then the call succeeds
    And the metadata was written 0 times
    And the media was switched 0 times
    And "vm1" shows no CD

  Scenario: Ejecting the CD of a migrating VM is refused
    Given "vm1" is migrating
    And the host state is recorded
    When the engine ejects the CD of "vm1"
    Then the call fails with code 51
    And the host state is unchanged

  Scenario: Ejecting an ISO another VM has prepared but not yet loaded keeps it active (bug 1725915)
    Given a running VM "vm2" with an empty CD-ROM sdc
    When the engine inserts "fedora" into "vm2" and, just before it loads, ejects the CD of "vm1"
    Then both calls succeed
    And "vm1" shows no CD
    And "vm2" shows "fedora"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the metadata of "vm2" names "fedora"
    And the volume "fedora" is active
    And nothing leaks and nothing lies
