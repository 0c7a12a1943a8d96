"""`python -m mjave.serving MODEL [options]`: `mjave serve` without the main CLI."""

import sys

from mjave.cli.serve import main

sys.exit(main())
