"""Serve the Proxmox VE API emulator, to try the provider by hand."""

import sys

from .tryout import main

sys.exit(main())
