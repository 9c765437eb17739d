"""``python -m fediversity_providers`` is the ``fediversity-provider`` command."""

import sys

from fediversity_providers.core.cli import main

sys.exit(main())
