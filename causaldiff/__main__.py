"""``python -m causaldiff`` (and ``torchrun --nproc-per-node N -m causaldiff ...``): the command line."""

import sys

from .cli import main

sys.exit(main())
