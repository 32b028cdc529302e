import sys

from ovirt_cdrom.cli import main

sys.exit(main())
