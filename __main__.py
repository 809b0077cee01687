"""``python -m sarjepa`` (and ``torchrun -m sarjepa``): the ``sarjepa`` command."""

import sys

from sarjepa.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
