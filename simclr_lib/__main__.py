"""``python -m simclr_lib``: see :mod:`simclr_lib.cli`."""
import sys

from .cli import main

sys.exit(main())
