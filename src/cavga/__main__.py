"""``python -m cavga`` (and ``torchrun -m cavga``): the command line of :mod:`cavga.cli`."""

import sys

from .cli import main

sys.exit(main())
