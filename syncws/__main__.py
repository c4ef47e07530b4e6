"""``python -m syncws``: see ``syncws.cli``."""

import sys

from .cli import main

sys.exit(main())
