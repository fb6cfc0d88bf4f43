"""``python -m pymmu ...``: the same as the ``pymmu`` command."""
import sys

from pymmu.cli import main

sys.exit(main())
