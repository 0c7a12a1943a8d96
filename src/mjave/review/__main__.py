"""`python -m mjave.review ...`: `mjave review` without the main CLI."""

import sys

from mjave.review.cli import main

sys.exit(main())
