@recovery
Feature: VM recovery flow
  When the host agent starts again it cleans up the storage leftovers of an interrupted
  load, eject or change without changing what the VM holds: the CD in the tray is the
  truth, the metadata is made to name it, and every other volume it named is torn down.
  The cases (insert.1 ... change.6) are the rows of the recovery table in docs/design.md.

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc

  Scenario Outline: Recovery case <case>: <entries>, tray <tray>, active <active>
    Given the CD-ROM metadata of "vm1" reads "<entries>"
    And the tray of "vm1" holds "<tray>"
    And the active volumes are "<active>"
    When the host restarts and recovers
    Then recovery applied the design's case "<case>"
    And recovery is clean
    And the metadata of "vm1" names "<metadata after>"
    And the metadata of "vm1" has no state marker
    And the tray of "vm1" still holds "<tray>"
    And the active volumes are exactly "<active after>"
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

    Examples: VM with empty tray, insert CD
      | case     | entries                         | tray   | active         | metadata after | active after |
      | insert.1 | loading:fedora                  | fedora | fedora         | fedora         | fedora       |
      | insert.2 | loading:fedora                  | empty  | fedora         | empty          | none         |
      | insert.3 | loading:fedora                  | empty  | none           | empty          | none         |

    Examples: VM with loaded CD, eject CD (and change case 1)
      | case     | entries                         | tray   | active         | metadata after | active after |
      | eject.1  | ejecting:fedora                 | fedora | fedora         | fedora         | fedora       |
      | eject.2  | ejecting:fedora                 | empty  | fedora         | empty          | none         |
      | eject.3  | ejecting:fedora                 | empty  | none           | empty          | none         |

    Examples: VM with loaded CD, changeCD
      | case     | entries                         | tray   | active         | metadata after | active after |
      | change.2 | ejecting:fedora, loading:debian | fedora | fedora         | fedora         | fedora       |
      | change.3 | ejecting:fedora, loading:debian | fedora | fedora, debian | fedora         | fedora       |
      | change.4 | ejecting:fedora, loading:debian | debian | fedora, debian | debian         | debian       |
      | change.5 | debian, ejecting:fedora         | debian | fedora, debian | debian         | debian       |
      | change.6 | debian, ejecting:fedora         | debian | debian         | debian         | debian       |

  Scenario: A settled drive is left alone
    Given "vm1" holds "fedora"
    And the host state is recorded
    When the host restarts and recovers
    Then recovery found nothing to do
    And recovery is clean
    And the host state is unchanged

  Scenario: Recovery does not tear down an ISO another VM holds
    Given a running VM "vm2" with an empty CD-ROM sdc
    And "vm2" holds "fedora"
    And the CD-ROM metadata of "vm1" reads "ejecting:fedora"
    And the tray of "vm1" holds "empty"
    When the host restarts and recovers
    Then recovery applied the design's case "eject.2"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And "vm2" shows "fedora"
    And the metadata of "vm2" names "fedora"
    And the volume "fedora" is active
    And nothing leaks and nothing lies

  Scenario: A teardown that fails during recovery keeps the metadata so that the next recovery retries
    Given the CD-ROM metadata of "vm1" reads "loading:fedora"
    And the tray of "vm1" holds "empty"
    And the active volumes are "fedora"
    And every "volumes.teardown" call fails with "storage error"
    When the host restarts and recovers
    Then recovery is not clean
    And the metadata of "vm1" names "loading:fedora"
    And the volume "fedora" is active
    When the host works normally again
    And the host restarts and recovers
    Then recovery is clean
    And recovery applied the design's case "insert.2"
    And nothing leaks and nothing lies

  Scenario: A change on a drive with leftovers recovers it first
    Given "vm1" holds "fedora"
    And the CD-ROM metadata of "vm1" reads "ejecting:fedora, loading:debian"
    And the active volumes are "fedora, debian"
    When the engine changes the CD of "vm1" to "ubuntu"
    Then the call succeeds
    And "vm1" shows "ubuntu"
    And the metadata of "vm1" names "ubuntu"
    And the active volumes are exactly "ubuntu"
    And nothing leaks and nothing lies

  Scenario: vdsm 4.50's nested pending load, interrupted after the tray switched
    Given the CD-ROM element of "vm1" is what vdsm 4.50 left:
      """
      <ovirt-vm:device devtype="disk" name="sdc">{fedora}<ovirt-vm:change>{debian}<ovirt-vm:state>loading</ovirt-vm:state></ovirt-vm:change></ovirt-vm:device>
      """
    And the tray of "vm1" holds "debian"
    And the active volumes are "fedora, debian"
    When the host restarts and recovers
    Then recovery applied the design's case "change.4"
    And the metadata of "vm1" names "debian"
    And the metadata of "vm1" has no state marker
    And the active volumes are exactly "debian"
    And the unrelated metadata of "vm1" is unchanged
    And nothing leaks and nothing lies

  Scenario: vdsm 4.50's nested pending load into an empty tray, interrupted before the load
    Given the CD-ROM element of "vm1" is what vdsm 4.50 left:
      """
      <ovirt-vm:device devtype="disk" name="sdc"><ovirt-vm:change>{fedora}<ovirt-vm:state>loading</ovirt-vm:state></ovirt-vm:change></ovirt-vm:device>
      """
    And the tray of "vm1" holds "empty"
    And the active volumes are "fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "insert.2"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the active volumes are exactly "none"
    And the unrelated metadata of "vm1" is unchanged

  Scenario: vdsm 4.50's nested pending eject, interrupted after the tray emptied
    Given the CD-ROM element of "vm1" is what vdsm 4.50 left:
      """
      <ovirt-vm:device devtype="disk" name="sdc">{fedora}<ovirt-vm:change><ovirt-vm:state>ejecting</ovirt-vm:state></ovirt-vm:change></ovirt-vm:device>
      """
    And the tray of "vm1" holds "empty"
    And the active volumes are "fedora"
    When the host restarts and recovers
    Then recovery applied the design's case "eject.2"
    And the metadata of "vm1" keeps only the empty CD-ROM element
    And the active volumes are exactly "none"
    And the unrelated metadata of "vm1" is unchanged

  Scenario Outline: A crash at <call> #<n> (<effect> it takes effect) while changing is recovered
    Given "vm1" holds "fedora"
    And the <n> "<call>" call crashes the host <effect> it takes effect
    When the engine changes the CD of "vm1" to "debian"
    Then the call never returns because the host crashed
    When the host restarts and recovers
    Then recovery is clean
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged
    And "vm1" shows "<shows>"
    When the engine changes the CD of "vm1" to "ubuntu"
    Then the call succeeds
    And nothing leaks and nothing lies

    Examples: Change fedora to debian
      | call             | n   | effect | shows  |
      | metadata.write   | 1st | before | fedora |
      | metadata.write   | 1st | after  | fedora |
      | volumes.prepare  | 1st | before | fedora |
      | volumes.prepare  | 1st | after  | fedora |
      | hypervisor.load  | 1st | before | fedora |
      | hypervisor.load  | 1st | after  | debian |
      | volumes.teardown | 1st | before | debian |
      | volumes.teardown | 1st | after  | debian |
      | metadata.write   | 2nd | before | debian |
      | metadata.write   | 2nd | after  | debian |

  Scenario Outline: A crash at <call> #<n> (<effect> it takes effect) while inserting is recovered
    Given the <n> "<call>" call crashes the host <effect> it takes effect
    When the engine inserts "fedora" into "vm1"
    Then the call never returns because the host crashed
    When the host restarts and recovers
    Then recovery is clean
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged
    And "vm1" shows "<shows>"
    When the engine changes the CD of "vm1" to "ubuntu"
    Then the call succeeds
    And nothing leaks and nothing lies

    Examples: Insert fedora into the empty tray
      | call            | n   | effect | shows  |
      | metadata.write  | 1st | before | empty  |
      | metadata.write  | 1st | after  | empty  |
      | volumes.prepare | 1st | before | empty  |
      | volumes.prepare | 1st | after  | empty  |
      | hypervisor.load | 1st | before | empty  |
      | hypervisor.load | 1st | after  | fedora |
      | metadata.write  | 2nd | before | fedora |
      | metadata.write  | 2nd | after  | fedora |

  Scenario Outline: A crash at <call> #<n> (<effect> it takes effect) while ejecting is recovered
    Given "vm1" holds "fedora"
    And the <n> "<call>" call crashes the host <effect> it takes effect
    When the engine ejects the CD of "vm1"
    Then the call never returns because the host crashed
    When the host restarts and recovers
    Then recovery is clean
    And nothing leaks and nothing lies
    And the unrelated metadata of "vm1" is unchanged
    And "vm1" shows "<shows>"
    When the engine changes the CD of "vm1" to "ubuntu"
    Then the call succeeds
    And nothing leaks and nothing lies

    Examples: Eject fedora
      | call             | n   | effect | shows  |
      | metadata.write   | 1st | before | fedora |
      | metadata.write   | 1st | after  | fedora |
      | hypervisor.eject | 1st | before | fedora |
      | hypervisor.eject | 1st | after  | empty  |
      | volumes.teardown | 1st | before | empty  |
      | volumes.teardown | 1st | after  | empty  |
      | metadata.write   | 2nd | before | empty  |
      | metadata.write   | 2nd | after  | empty  |
