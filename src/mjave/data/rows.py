"""From a row (or a Record) to what the Extractor reads, and the row checks every engine shares.

Every front end (predict, the Ray engine, serve, evaluate, experiments, completion, review, the
demo) turns its rows into Extractor inputs through `to_item`, so the image of a product is found
the same way everywhere (relative to an image root, else `<root>/<cid or id>.jpg|...`, as
training does) and a missing image fails with one message. The local and the Ray engine check
ids and texts with `check_id` / `check_text`, so a bad row gets the same message from both.
No torch here: the Ray read stage and the CLI import this module.
"""

from __future__ import annotations

import os
from collections import abc
from pathlib import Path
from typing import Any

from mjave.config.encoder import IMAGE_EXTENSIONS
from mjave.data.errors import DataError

PathLike = str | os.PathLike


def field_of(row: Any, name: str) -> Any:
    """A field of a mapping, a Record, or a reader row (`mjave.data.io.InputRow`, whose
    fields beyond id/text/image live in `extra`); None when absent."""
    if isinstance(row, abc.Mapping):
        return row.get(name)
    if hasattr(row, name):
        return getattr(row, name)
    extra = getattr(row, "extra", None)
    return extra.get(name) if isinstance(extra, abc.Mapping) else None


# --------------------------------------------------------------------------------------------
# Row checks (both engines)
# --------------------------------------------------------------------------------------------


def id_key(value: Any) -> str | None:
    """The comparable form of an id (JSON ints and CSV strings of one id are equal); None for
    anything that cannot be an id (missing, bool, float, list, ...)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def check_id(value: Any) -> str:
    """The id of a row as its key, or a DataError (`missing id` / `bad id`)."""
    key = id_key(value)
    if key is None or key == "":
        missing = value in (None, "")
        what = "missing" if missing else f"not a string or integer: {value!r}"
        raise DataError(f"the id is {what}", field="id",
                        reason="missing id" if missing else "bad id")
    return key


def duplicate_id(key: str, first: str) -> DataError:
    """The error of a repeated id; `first` says where it was first seen (e.g. "row 3")."""
    return DataError(f"duplicate id {key!r} (first at {first})", field="id",
                     reason="duplicate id")


def check_text(text: Any) -> str:
    """The text of one item, or a DataError whose `reason` names what is wrong."""
    if text is None:
        raise DataError("the text is missing", field="text", reason="missing text")
    if not isinstance(text, str):
        raise DataError(f"the text must be a string, found {type(text).__name__}", field="text",
                        reason="text not a string")
    if not text.strip():
        raise DataError("the text is empty", field="text", reason="empty text")
    return text


def bad_category(type_name: str) -> DataError:
    """The error of a category that is not a string (`type_name`: what it is)."""
    return DataError(f"the category must be a string, found {type_name}", field="category",
                     reason="bad category")


def check_category(category: Any) -> str | None:
    """The category of one item (None: none), or the `bad category` DataError."""
    if category is not None and not isinstance(category, str):
        raise bad_category(type(category).__name__)
    return category


def bad_image_field(type_name: str) -> DataError:
    """The error of a row whose image is neither a path string nor bytes."""
    return DataError(f"the image must be a path string or bytes, found {type_name}",
                     field="image", reason="bad image field")


def check_image_field(image: Any) -> None:
    """A row's image must be a path string or encoded bytes (or absent)."""
    if image is not None and not isinstance(image, (str, bytes, bytearray)):
        raise bad_image_field(type(image).__name__)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def product_id(row: Any) -> str:
    """The key a product's image is named by: the cid if any, else the id."""
    cid = field_of(row, "cid")
    return str(cid if cid is not None else field_of(row, "id"))


def resolve_image_path(row: Any, image_root: PathLike | None
                       ) -> tuple[Path | None, list[Path]]:
    """The image file of a row and the candidate paths looked at (for error messages).

    The row's `image` is taken relative to `image_root` unless absolute. A row naming no image
    falls back to `<image_root>/<cid or id>.jpg` (or .jpeg/.png/.webp), the MEPAVE convention
    of naming images by product id.
    """
    root = Path(image_root) if image_root is not None else None
    image = field_of(row, "image")
    if image:
        p = Path(image).expanduser()
        if not p.is_absolute() and root is not None:
            p = root / p
        return p, [p]
    if root is None:
        return None, []
    tried = [root / f"{product_id(row)}{ext}" for ext in IMAGE_EXTENSIONS]
    return next((p for p in tried if p.is_file()), None), tried


def missing_image(tried: list[Path]) -> DataError:
    """The one error of a row without an image under the `missing_image="error"` policy."""
    where = (f"looked for {', '.join(map(str, tried))}" if tried
             else "give an image field or an image root")
    return DataError(f"no image ({where})", field="image", reason="missing image")


def find_image(row: Any, image_root: PathLike | None = None, policy: str = "zeros"
               ) -> Path | None:
    """The image path of a row as training resolves it; None when there is none and `policy`
    (the model's `missing_image`) allows that, else the `missing_image` DataError."""
    path, tried = resolve_image_path(row, image_root)
    if path is None and policy == "error":
        raise missing_image(tried)
    return path


def to_item(row: Any, image_root: PathLike | None = None, *, uses_image: bool = True,
            missing_image: str = "zeros") -> dict[str, Any]:
    """The Extractor's item `{"text", "image", "category"}` of a row (a Record, a mapping with
    id/cid/text/image/category, or a reader row), as `Extractor.predict_batch` takes it.

    `image`: encoded bytes or a PIL image pass through; a path (or no image) is resolved by
    `find_image` against `image_root`; None when `uses_image` is False (a text-only model).
    Pass the model's own settings: `uses_image=extractor.uses_image,
    missing_image=extractor.missing_image` (then a model that needs an image and finds none
    raises the one `missing image` DataError here). The text and category are not checked here:
    the Extractor checks them per item (`check_text`, `check_category`).
    """
    image = field_of(row, "image")
    if not uses_image:
        image = None
    elif image is None or isinstance(image, (str, os.PathLike)):
        image = find_image(row, image_root, missing_image)
    elif not isinstance(image, (bytes, bytearray)) and not hasattr(image, "convert"):
        check_image_field(image)  # a number, a list, ...: the one `bad image field` error
    return {"text": field_of(row, "text"), "image": image,
            "category": field_of(row, "category")}


__all__ = ["bad_category", "bad_image_field", "check_category", "check_id",
           "check_image_field", "check_text", "duplicate_id", "field_of",
           "find_image", "id_key", "missing_image", "product_id", "resolve_image_path",
           "to_item"]
