@legacy
Feature: Legacy path route (ISO given by path)
  The design keeps the old behaviour for an ISO given by path (docs/design.md, "The legacy
  path route"): no metadata states when no volume is involved; a missing file is
  ImageFileNotFound. When a path replaces (or an empty path ejects) a CD given by PDIV, its
  volume is torn down. A path that names a storage domain's volume is that volume when the
  path holds its pool, and is refused (UnsupportedOperation) when it does not: loaded as a
  file, nothing would record it, and nothing would tear it down.

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc
    And only the legacy ISO files rhel8 and rhel9 exist

  Scenario: Load an ISO by path into the empty tray
    When the engine loads the legacy ISO "rhel8" into "vm1" by path
    Then the call succeeds
    And "vm1" shows "path rhel8"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the metadata was written 0 times
    And the active volumes are exactly "none"
    And the unrelated metadata of "vm1" is unchanged

  Scenario: Change one legacy ISO for another
    Given "vm1" holds the legacy ISO "rhel8"
    When the engine loads the legacy ISO "rhel9" into "vm1" by path
    Then the call succeeds
    And "vm1" shows "path rhel9"
    And the metadata of "vm1" keeps only the empty CD-ROM element

  Scenario: A path that does not exist is ImageFileNotFound and changes nothing
    Given "vm1" holds the legacy ISO "rhel8"
    And the host state is recorded
    When the engine loads the legacy ISO "centos7" into "vm1" by path
    Then the call fails with code 13
    And the host state is unchanged

  Scenario: The hypervisor refuses the legacy ISO: the call fails and the old one stays
    Given "vm1" holds the legacy ISO "rhel8"
    And the next "hypervisor.load" call fails with "hypervisor error"
    When the engine loads the legacy ISO "rhel9" into "vm1" by path
    Then the call fails with code 41
    And "vm1" shows "path rhel8"
    And the metadata of "vm1" keeps only the empty CD-ROM element

  Scenario: An empty path ejects a legacy ISO
    Given "vm1" holds the legacy ISO "rhel8"
    When the engine ejects the CD of "vm1" by an empty path
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the metadata was written 0 times

  Scenario: A path replaces a CD given by PDIV: its volume is torn down and its metadata removed
    Given "vm1" holds "fedora"
    When the engine loads the legacy ISO "rhel8" into "vm1" by path
    Then the call succeeds
    And "vm1" shows "path rhel8"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the volume "fedora" is not active
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: An empty path ejects a CD given by PDIV and tears its volume down
    Given "vm1" holds "fedora"
    When the engine ejects the CD of "vm1" by an empty path
    Then the call succeeds
    And "vm1" shows no CD
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the active volumes are exactly "none"
    And nothing leaks and nothing lies

  Scenario: A path replacing a PDIV CD fails to load: the volume CD stays, active and named
    Given "vm1" holds "fedora"
    And the next "hypervisor.load" call fails with "hypervisor error"
    When the engine loads the legacy ISO "rhel8" into "vm1" by path
    Then the call fails with code 41
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the metadata of "vm1" has no state marker
    And the volume "fedora" is active
    And nothing leaks and nothing lies

  Scenario: A CD by PDIV replaces a legacy ISO
    Given "vm1" holds the legacy ISO "rhel8"
    When the engine changes the CD of "vm1" to "debian"
    Then the call succeeds
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And the active volumes are exactly "debian"
    And nothing leaks and nothing lies

  Scenario: A path naming a volume with its pool is that volume: prepared, recorded, torn down
    Given "vm1" holds "fedora"
    When the engine loads "debian" into "vm1" by its pool path
    Then the call succeeds
    And "vm1" shows "debian"
    And the metadata of "vm1" names "debian"
    And the active volumes are exactly "debian"
    And nothing leaks and nothing lies

  Scenario: A volume loaded by its pool path is torn down by the next eject
    Given "vm1" holds "fedora"
    When the engine loads "debian" into "vm1" by its pool path
    And the engine ejects the CD of "vm1"
    Then the call succeeds
    And "vm1" shows no CD
    And the active volumes are exactly "none"
    And nothing leaks and nothing lies

  Scenario: A block volume's path without its pool is refused and changes nothing
    Given "vm1" holds "fedora"
    When the engine loads "fedora" into "vm1" by its block path
    Then the call fails with code 75
    And "vm1" shows "fedora"
    And the metadata of "vm1" names "fedora"
    And the volume "fedora" is active
    And nothing leaks and nothing lies
