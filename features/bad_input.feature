@badinput
Feature: Bad input gets a clear, typed error and changes nothing
  Every request below is an otherwise valid change of "vm1" (which holds "fedora") to
  "debian" by PDIV, or to the legacy ISO "rhel8" by path, with one field replaced by a JSON
  value; "(missing)" removes the field. Each is refused with vdsm's code, and the host
  (trays, volumes, every VM's metadata byte for byte) is exactly as before.

  Background:
    Given a host with the ISO volumes fedora, debian and ubuntu
    And a running VM "vm1" with an empty CD-ROM sdc
    And only the legacy ISO files rhel8 and rhel9 exist
    And "vm1" holds "fedora"
    And the host state is recorded

  Scenario Outline: <what> is refused with code <code>
    When the engine inserts "debian" into "vm1" with <field> set to <value>
    Then the call fails with code <code>
    And the host state is unchanged

    Examples: The VM
      | what                          | field | value                                  | code |
      | a malformed vmID              | vmID  | "6f4b1f2e-0c1d-4a8e-9b7a"              | 100  |
      | a path in vmID                | vmID  | "../../../etc/passwd"                  | 100  |
      | a vmID that is not a string   | vmID  | 42                                     | 100  |
      | a null vmID                   | vmID  | null                                   | 100  |
      | an unknown VM                 | vmID  | "11111111-2222-4333-8444-555555555555" | 1    |

    Examples: The drive
      | what                          | field           | value      | code |
      | an unknown drive              | cdromspec.index | "5"        | 41   |
      | an unknown drive on another bus | cdromspec.iface | "virtio" | 41   |
      | an unknown iface              | cdromspec.iface | "floppy"   | 100  |
      | an iface that is not a string | cdromspec.iface | 1          | 100  |
      | a negative index              | cdromspec.index | "-1"       | 100  |
      | a float index                 | cdromspec.index | 2.0        | 100  |
      | a word for an index           | cdromspec.index | "two"      | 100  |
      | a bool index                  | cdromspec.index | true       | 100  |
      | a huge index                  | cdromspec.index | "99999999" | 100  |
      | a missing iface               | cdromspec.iface | (missing)  | 100  |
      | a missing index               | cdromspec.index | (missing)  | 100  |

    Examples: The drive spec
      | what                              | field                       | value                                  | code |
      | a cdromspec that is a list        | cdromspec                   | ["sata", 2]                            | 100  |
      | a cdromspec that is null          | cdromspec                   | null                                   | 100  |
      | neither drive_spec nor path       | cdromspec.drive_spec        | (missing)                              | 100  |
      | a drive_spec that is a string     | cdromspec.drive_spec        | "debian.iso"                           | 100  |
      | a drive_spec that is a list       | cdromspec.drive_spec        | ["debian"]                             | 100  |
      | a missing volumeID                | cdromspec.drive_spec.volumeID | (missing)                            | 100  |
      | a missing poolID                  | cdromspec.drive_spec.poolID | (missing)                              | 100  |
      | a malformed domainID              | cdromspec.drive_spec.domainID | "88252cf6"                           | 100  |
      | a path in imageID                 | cdromspec.drive_spec.imageID | "../../../../dev/sda"                 | 100  |
      | a glob in volumeID                | cdromspec.drive_spec.volumeID | "*"                                  | 100  |
      | XML in volumeID                   | cdromspec.drive_spec.volumeID | "<ovirt-vm:state>loading</ovirt-vm:state>" | 100  |
      | a UUID followed by a path         | cdromspec.drive_spec.volumeID | "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d/../x" | 100 |
      | a UUID and a newline smuggled in  | cdromspec.drive_spec.volumeID | "5d2e9a41-7c3b-4f6a-9e1d-2b8c7a6f5e4d\\n<x/>" | 100 |
      | a volumeID that is a number       | cdromspec.drive_spec.volumeID | 7                                    | 100  |
      | a device that is not a cdrom      | cdromspec.drive_spec.device | "disk"                                 | 100  |
      | a network CD-ROM                  | cdromspec.drive_spec.protocol | "gluster"                            | 75   |
      | a volume storage does not have    | cdromspec.drive_spec.volumeID | "dead0000-beef-4000-8000-000000000001" | 1630 |

  Scenario Outline: A legacy request with <what> is refused with code <code>
    When the engine loads a legacy ISO into "vm1" with <field> set to <value>
    Then the call fails with code <code>
    And the host state is unchanged

    Examples: The legacy path
      | what                      | field          | value                                | code |
      | a relative path           | cdromspec.path | "iso/debian.iso"                     | 100  |
      | a path with traversal     | cdromspec.path | "/rhev/data-center/../../etc/shadow" | 100  |
      | a path that is not a string | cdromspec.path | 42                                 | 100  |
      | a null path               | cdromspec.path | null                                 | 100  |
      | a path with a NUL byte    | cdromspec.path | "/tmp/x.iso\u0000.txt"               | 100  |
      | a file that does not exist | cdromspec.path | "/no/such/file.iso"                 | 13   |
      | a legacy request on an unknown VM | vmID   | "11111111-2222-4333-8444-555555555555" | 1 |
