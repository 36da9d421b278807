"""``python -m usdrl.cli`` (and ``torchrun -m usdrl.cli``) runs the command line."""

import sys

from . import main

sys.exit(main())
