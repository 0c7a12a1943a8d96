"""`python -m mjave.cli ...`, the same as the `mjave` command."""

import sys

from mjave.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
