"""`python -m mjave ...`, the same as the `mjave` command; what `torchrun -m mjave train` runs."""

import sys

from mjave.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
