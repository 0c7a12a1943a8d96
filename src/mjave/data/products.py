"""Unlabelled products from any file a catalog team has: the mjave formats, CSV or Parquet.

Kept for its names: the reading itself is the one reader registry, `mjave.data.io`
(`iter_records` reads all five formats; a CSV or Parquet row becomes a Record without spans via
`record_from_row`). `cid` groups several texts (sentences) of one product, and
`Record.product_id` (cid, else id) is the key the catalog table is joined on.
"""

from __future__ import annotations

from mjave.data.io import EXTENSIONS as PRODUCT_EXTENSIONS
from mjave.data.io import FORMATS as PRODUCT_FORMATS
from mjave.data.io import detect_format as detect_product_format
from mjave.data.io import iter_records as iter_products
from mjave.data.io import read_records as read_products
from mjave.data.io import record_from_row

__all__ = ["PRODUCT_EXTENSIONS", "PRODUCT_FORMATS", "detect_product_format", "iter_products",
           "read_products", "record_from_row"]
