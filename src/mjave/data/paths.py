"""`PathLike`: what every reader and writer of `mjave.data` takes as a file name, defined once."""

from __future__ import annotations

import os

PathLike = str | os.PathLike

__all__ = ["PathLike"]
