"""`python -m mjave.review ...`: `mjave review` without the main CLI."""

import sys

from mjave.cli.review import main

sys.exit(main())
