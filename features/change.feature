@change
Feature: VM with loaded CD, changeCD
  The engine sends changeCD with a new ISO by PDIV while the tray holds another. Each
  numbered step of the design's flow (docs/design.md, "Change one CD for another (steps
  1-8)"), and each "if failed" branch, is a scenario.

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc
    And "vm1" holds "fedora"

  Scenario: Change the CD (steps 1 to 8)
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is not active
    And the volume "debian" is active
    And the active volumes are exactly "debian"
    And the unrelated metadata of "vm1" is unchanged
    And the metadata was written 2 times
    And the media was switched 1 times

  Scenario: Steps 2 and 3 mark the old CD ejecting and add the new one loading before preparing
    Given the metadata of "vm1" is observed at each "volumes.prepare" call
    When the engine changes the CD of "vm1" to "debian"
    Then at each "volumes.prepare" call the metadata read "ejecting:fedora, loading:debian"
    And each time the metadata had 2 CD-ROM elements
    And the call succeeds

  Scenario: Step 7 tears the old volume down while the metadata still names it
    Given the metadata of "vm1" is observed at each "volumes.teardown" call
    When the engine changes the CD of "vm1" to "debian"
    Then at each "volumes.teardown" call the metadata read "ejecting:fedora, loading:debian"
    And the call succeeds
    And the metadata of "vm1" names "debian"

  Scenario: Steps 2 and 3 fail to write the metadata: the old CD stays and nothing changes
    Given the host state is recorded
    And the next "metadata.write" call fails with "metadata error" after taking effect
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 100
    And the host state is unchanged

  Scenario: Step 4 prepare fails: the markers are removed and the old CD stays
    Given the next "volumes.prepare" call fails with "storage error"
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 1630
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is active
    And the volume "debian" is not active
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 4 prepare activates the new volume and then fails: it is torn down too
    Given the next "volumes.prepare" call fails with "storage error" after taking effect
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 1630
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the active volumes are exactly "fedora"
    And nothing leaks and nothing lies

  Scenario: Step 5 load fails: the new volume is torn down, the old CD stays, the call fails
    Given the next "hypervisor.load" call fails with "hypervisor error"
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the metadata of "vm1" has no state marker
    And the active volumes are exactly "fedora"
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: Step 5 load times out but took effect: the drive is read back and the call succeeds
    Given the next "hypervisor.load" call fails with "timeout" after taking effect
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And the active volumes are exactly "debian"
    And nothing leaks and nothing lies

  Scenario: Step 5 load fails and the new volume cannot be torn down: its marker stays for recovery
    Given the next "hypervisor.load" call fails with "hypervisor error"
    And the next "volumes.teardown" call fails with "storage error"
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "ejecting:fedora, loading:debian"
    And the volume "debian" is active
    When the host restarts and recovers
    Then recovery applied the design's case "change.3"
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And nothing leaks and nothing lies

  Scenario: Step 7 cannot tear down the old volume: the call succeeds, recovery retries
    Given the next "volumes.teardown" call fails with "timeout"
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And the volume "fedora" is active
    And the metadata of "vm1" names "ejecting:fedora, loading:debian"
    When the host restarts and recovers
    Then recovery applied the design's case "change.4"
    And the metadata of "vm1" names "debian"
    And the active volumes are exactly "debian"
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged

  Scenario: Steps 6 and 8 cannot write the final metadata: the call succeeds, recovery settles it
    Given the 2nd "metadata.write" call fails with "metadata error"
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And the volume "fedora" is not active
    And the metadata of "vm1" names "ejecting:fedora, loading:debian"
    When the host restarts and recovers
    Then recovery applied the design's case "change.4"
    And the metadata of "vm1" names "debian"
    And nothing leaks and nothing lies

  Scenario: A shared ISO: changing away from it on one VM keeps it active for the other
    Given a running VM "vm2" with an empty CD-ROM sdc
    And "vm2" holds "fedora"
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And "vm2" shows "fedora"
    And the metadata of "vm1" names "debian"
    And the metadata of "vm2" names "fedora"
    And the active volumes are exactly "fedora, debian"
    And nothing leaks and nothing lies

  Scenario: A shared ISO: a failed load on one VM does not tear down the volume the other holds
    Given a running VM "vm2" with an empty CD-ROM sdc
    And "vm2" holds "debian"
    And the next "hypervisor.load" call fails with "hypervisor error"
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And "vm2" shows "debian"
    And the active volumes are exactly "fedora, debian"
    And nothing leaks and nothing lies

  Scenario: Changing to the CD already loaded is a successful no-op
    When the engine changes the CD of "vm1" to "fedora"
    Then the call succeeds
    And the metadata was written 0 times
    And the media was switched 0 times
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"

  Scenario: Changing the CD of a migrating VM is refused with MigrationInProgress
    Given "vm1" is migrating
    And the host state is recorded
    When the engine changes the CD of "vm1" to "debian"
    Then the call fails with code 51
    And the host state is unchanged

  Scenario: Two identical calls on one drive: the second waits and becomes a no-op
    When the engine changes the CD of "vm1" to "debian" twice at the same time
    Then both calls succeed
    And the second call waited for the first
    And the media was loaded 1 time
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And nothing leaks and nothing lies

  Scenario: A host writing vdsm 4.50 metadata keeps one CD-ROM element through a change
    Given the host writes metadata in the "vdsm-4.50" encoding
    And the metadata of "vm1" is observed at each "hypervisor.load" call
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And at each "hypervisor.load" call the metadata read "ejecting:fedora, loading:debian"
    And each time the metadata had 1 CD-ROM element
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And the metadata of "vm1" has no state marker
    And the active volumes are exactly "debian"
    And the unrelated metadata of "vm1" is unchanged
