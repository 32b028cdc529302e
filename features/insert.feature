@insert
Feature: VM with empty tray, insert CD
  The engine sends changeCD with the ISO by PDIV into an empty tray. Each numbered step of
  the design's flow (docs/design.md, "Insert into an empty tray (steps 1-5)"), and each
  "if failed" branch, is a scenario; a failure is scripted before the call takes effect,
  or after it (a timeout that took effect).

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc

  Scenario: Insert a CD into the empty tray (steps 1 to 5)
    When the engine inserts "fedora" into "vm1"
    Then the call succeeds
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is active
    And the active volumes are exactly "fedora"
    And the unrelated metadata of "vm1" is unchanged
    And the metadata was written 2 times
    And the media was switched 1 times

  Scenario: Step 2 adds the drive spec with state="loading" before the volume is prepared
    Given the metadata of "vm1" is observed at each "volumes.prepare" call
    When the engine inserts "fedora" into "vm1"
    Then at each "volumes.prepare" call the metadata read "loading:fedora"
    And the call succeeds

  Scenario: Step 2 fails to write the metadata: nothing is prepared and nothing changes
    Given the host state is recorded
    And the next "metadata.write" call fails with "metadata error"
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 100
    And the host state is unchanged

  Scenario: Step 2 writes the metadata but reports a failure: the write is undone
    Given the host state is recorded
    And the next "metadata.write" call fails with "metadata error" after taking effect
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 100
    And "vm1" shows no CD
    And the metadata of "vm1" names "empty"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is not active
    And the unrelated metadata of "vm1" is unchanged

  Scenario: Step 3 prepare fails: the drive spec is removed and the call fails
    Given the next "volumes.prepare" call fails with "storage error"
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 1630
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 3 prepare activates the volume and then fails: the volume is torn down too
    Given the next "volumes.prepare" call fails with "storage error" after taking effect
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 1630
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And nothing leaks and nothing lies

  Scenario: Step 3 prepare of a volume storage does not have fails with CannotPrepareImage
    Given the host state is recorded
    When the engine inserts "missing" into "vm1"
    Then the call fails with code 1630
    And the host state is unchanged

  Scenario: Step 4 load fails: the volume is torn down, the drive spec removed, the call fails
    Given the next "hypervisor.load" call fails with "hypervisor error"
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 41
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 4 load times out but took effect: the drive is read back and the call succeeds
    Given the next "hypervisor.load" call fails with "timeout" after taking effect
    When the engine inserts "fedora" into "vm1"
    Then the call succeeds
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the volume "fedora" is active
    And nothing leaks and nothing lies

  Scenario: Step 4 load fails and the teardown fails too: the loading marker stays for recovery
    Given the next "hypervisor.load" call fails with "hypervisor error"
    And the next "volumes.teardown" call fails with "storage error"
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 41
    And "vm1" shows no CD
    And the metadata of "vm1" names "loading:fedora"
    And the volume "fedora" is active
    When the host restarts and recovers
    Then recovery applied the design's case "insert.2"
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged

  Scenario: Step 4 load fails and the drive cannot be read back: markers stay, recovery decides
    Given the next "hypervisor.load" call fails with "timeout" after taking effect
    And every "hypervisor.cdrom" call after the first fails with "hypervisor error"
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "loading:fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "insert.1"
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And nothing leaks and nothing lies

  Scenario: Step 5 cannot remove the state attribute: the call still succeeds
    Given the 2nd "metadata.write" call fails with "metadata error"
    When the engine inserts "fedora" into "vm1"
    Then the call succeeds
    And "vm1" shows "fedora"
    And the volume "fedora" is active
    And the metadata of "vm1" names "loading:fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "insert.1"
    And the metadata of "vm1" names "fedora"
    And nothing leaks and nothing lies

  Scenario: Inserting a CD into a migrating VM is refused
    Given "vm1" is migrating
    And the host state is recorded
    When the engine inserts "fedora" into "vm1"
    Then the call fails with code 51
    And the host state is unchanged
