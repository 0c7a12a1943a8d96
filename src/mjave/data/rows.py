"""From a row (or a Record) to what the Extractor reads, and the row checks every engine shares.

Every front end (predict, the Ray engine, serve, evaluate, experiments, completion, review, the
demo) turns its rows into Extractor inputs through `to_item`, so the image of a product is found
the same way everywhere (relative to an image root, else `<root>/<cid or id>.jpg|...`, as
training does) and a missing image fails with one message. The local and the Ray engine check
ids and texts with `check_id` / `check_text`, so a bad row gets the same message from both.
The limits every front end shares live here too: a text must be encodable and at most
`MAX_TEXT_CHARS` characters, an image file must be a regular file (`open_image_file`), inside
the image root when there is one (`image_in_root`, the rule of the server and of `mjave
predict --image-root`), and at most `MAX_IMAGE_PIXELS` pixels (`check_image_pixels`, read from
the header before decoding).
No torch here: the Ray read stage and the CLI import this module.
"""

from __future__ import annotations

import math
import os
import stat
from collections import abc
from pathlib import Path
from typing import Any, BinaryIO

from mjave.config.encoder import IMAGE_EXTENSIONS
from mjave.data.errors import DataError
from mjave.data.paths import PathLike


MAX_TEXT_CHARS = 100_000
"""The hard cap on one text (characters), the default of every front end: a longer text is an
error row / DataError, not minutes of one row's windows (about 0.2 s per 1,000 characters on a
CPU). Texts under it are windowed (`mjave.inference.windows`); the server's own per-request cap
(`ServeConfig.max_text_chars`) is lower."""

MAX_IMAGE_PIXELS = 40_000_000
"""The most pixels (width x height) an image may have, read from its header before decoding:
the default of `mjave predict`, the Ray engine, the Extractor and the server (a 11000x11000 PNG
takes 1.5 GB to decode)."""


def field_of(row: Any, name: str) -> Any:
    """A field of a mapping, a Record, or a reader row (`mjave.data.formats.InputRow`, whose
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
    """The comparable form of an id (JSON ints and CSV strings of one id are equal), as every
    output stores it (a lone surrogate as its `\\udXXX` escape, so an id read back from a CSV
    or Parquet output matches the input's); None for anything that cannot be an id (missing,
    bool, float, list, an integer over Python's digit limit, ...)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, int):
        return None if int_too_long(value) else str(value)
    return None


def check_id(value: Any) -> str:
    """The id of a row as its key, or a DataError (`missing id` / `bad id`): a string of valid
    Unicode (no lone surrogate) or an integer."""
    key = id_key(value)
    if key is None or key == "":
        missing = isinstance(value, str) and value == "" or value is None
        what = "missing" if missing else f"not a string or integer: {short_repr(value)}"
        raise DataError(f"the id is {what}", field="id",
                        reason="missing id" if missing else "bad id")
    bad = unencodable(value) if isinstance(value, str) else None
    if bad is not None:
        raise DataError(f"the id is not valid Unicode: {bad}", field="id", reason="bad id")
    return key


def int_too_long(value: int) -> bool:
    """Whether an integer has more digits than Python converts to text (4,300 by default):
    such a value can be neither written nor compared as an id."""
    if value.bit_length() < 14_000:   # under 4,215 digits: always convertible
        return False
    try:
        str(value)
    except ValueError:
        return True
    return False


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages (an integer too long to write is
    described, not written)."""
    if isinstance(value, int) and int_too_long(value):
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


MAX_NESTING = 100
"""The deepest lists and objects may nest in a row's fields: JSON writers and readers recurse
once per level, so a deeper value is an error row rather than a crash of the writer."""


def check_values(fields: abc.Mapping[str, Any], max_nesting: int = MAX_NESTING) -> None:
    """The fields of a row must be writable as standard JSON: a DataError naming the first
    field that holds NaN or an infinity (`non-finite number`), an integer over Python's digit
    limit (`integer too long`) or lists/objects nested deeper than `max_nesting`
    (`nested too deep`). Walked without recursion, so any depth is checked safely."""
    for name, value in fields.items():
        stack = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            if isinstance(v, float) and not math.isfinite(v):
                spelt = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
                raise DataError(f"{spelt} is not a number standard JSON can hold",
                                field=str(name), reason="non-finite number")
            if isinstance(v, int) and not isinstance(v, bool) and int_too_long(v):
                raise DataError(f"an integer of {v.bit_length()} bits, more digits than Python "
                                "writes", field=str(name), reason="integer too long")
            if isinstance(v, (abc.Mapping, list, tuple)):
                if depth > max_nesting:
                    raise DataError(f"lists/objects nested more than {max_nesting} levels deep",
                                    field=str(name), reason="nested too deep")
                items = v.values() if isinstance(v, abc.Mapping) else v
                stack.extend((x, depth + 1) for x in items)


def duplicate_id(key: str, first: str) -> DataError:
    """The error of a repeated id; `first` says where it was first seen (e.g. "row 3")."""
    return DataError(f"duplicate id {key!r} (first at {first})", field="id",
                     reason="duplicate id")


def check_text(text: Any, max_chars: int | None = MAX_TEXT_CHARS) -> str:
    """The text of one item, or a DataError whose `reason` names what is wrong: missing, not a
    string, empty, not encodable (`unencodable`), or longer than `max_chars` (None: no cap)."""
    if text is None:
        raise DataError("the text is missing", field="text", reason="missing text")
    if not isinstance(text, str):
        raise DataError(f"the text must be a string, found {type(text).__name__}", field="text",
                        reason="text not a string")
    if not text.strip():
        raise DataError("the text is empty", field="text", reason="empty text")
    bad = unencodable(text)
    if bad is not None:
        raise DataError(f"the text is not valid Unicode: {bad}", field="text",
                        reason="invalid text")
    if max_chars is not None and len(text) > max_chars:
        raise DataError(f"the text has {len(text)} characters; the limit is {max_chars} "
                        "(split it, or raise the limit)", field="text", reason="text too long")
    return text


def unencodable(text: str) -> str | None:
    """What makes `text` impossible to encode as UTF-8 (and so to tokenize), or None.

    A Python string holds any code point, and JSON's `\\ud800` escape gives a lone surrogate
    (U+D800-U+DFFF), which no Unicode encoding allows; it is the only code point that cannot be
    encoded. Control characters and NUL are valid text (the tokenizer drops them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"a lone surrogate U+{ord(text[e.start]):04X} at character {e.start} (a "
                "\\ud800-style escape that encodes no character)")
    return None


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


def escape_surrogates(text: str) -> str:
    """`text` with each lone surrogate written as its `\\udXXX` escape, so that a writer
    (UTF-8 files, Arrow strings) can store a row that holds one; inside a JSON string the
    escape reads back as the very same string."""
    if unencodable(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def product_id(row: Any) -> str:
    """The key a product's image is named by: the cid if any, else the id."""
    cid = field_of(row, "cid")
    return str(cid if cid is not None else field_of(row, "id"))


def image_in_root(path: PathLike, root: PathLike) -> Path:
    """The real path (symlinks resolved) of the image `path` under the image `root`, or a
    DataError: the one rule of the server's `image_path` and of `mjave predict --image-root`.

    `path` is relative to `root` (an absolute path is allowed when it lies inside). Refused: an
    empty path or one with a NUL, any `..` component, and a real path outside the root (a
    symlink out of it included). The check is made before the file is opened, so the answer
    never tells whether a file outside the root exists."""
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise DataError("the image path is empty or contains a NUL character", field="image",
                        reason="bad image path")
    if ".." in Path(text).parts or ".." in text.replace("\\", "/").split("/"):
        raise DataError("the image path must not contain '..'", field="image",
                        reason="image outside root")
    try:
        real_root = Path(root).resolve()
        # Non-strict: whether a file outside exists is never revealed.
        target = (real_root / text).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, names too long
        raise DataError("the image path could not be resolved", field="image",
                        reason="bad image path") from None
    if not target.is_relative_to(real_root):
        raise DataError("the image path must point inside the image root (symlinks included)",
                        field="image", reason="image outside root")
    return target


def open_image_file(path: PathLike, max_bytes: int | None = None, *,
                    follow_symlinks: bool = True) -> BinaryIO:
    """`path` opened for reading if it is a regular file (of at most `max_bytes`), else a
    DataError. Opened non-blocking, so a FIFO or a device is refused instead of blocking the
    reader forever; `follow_symlinks=False` refuses a symlink (for a path already resolved)."""
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
             | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError("no such file", field="image", reason="missing image") from None
    except OSError as e:
        raise DataError(f"the image file cannot be read ({e.strerror})", field="image",
                        reason="bad image") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError("the image is not a regular file", field="image", reason="bad image")
        if max_bytes is not None and st.st_size > max_bytes:
            raise DataError(f"the image has {st.st_size} bytes; the limit is {max_bytes}",
                            field="image", reason="image too large")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_image_pixels(size: tuple[int, int], max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """An image of `size` (width, height; from its header, before decoding) must have at most
    `max_pixels` pixels, else a DataError (reason `image too large`)."""
    width, height = size
    if width * height > max_pixels:
        raise DataError(f"the image has {width}x{height} pixels; the limit is {max_pixels} "
                        "pixels", field="image", reason="image too large")


def resolve_image_path(row: Any, image_root: PathLike | None, *, confine: bool = False
                       ) -> tuple[Path | None, list[Path]]:
    """The image file of a row and the candidate paths looked at (for error messages).

    The row's `image` is taken relative to `image_root` unless absolute. A row naming no image
    falls back to `<image_root>/<cid or id>.jpg` (or .jpeg/.png/.webp), the MEPAVE convention
    of naming images by product id.

    `confine=True` (the front ends that read rows from outside: `mjave predict`, its Ray engine)
    applies the server's rule: with an image root, the row's image must stay inside it
    (`image_in_root`: a DataError otherwise), and a fallback name that would leave it is not
    looked for. Training data (a run config's own image root) is not confined.
    """
    root = Path(image_root) if image_root is not None else None
    image = field_of(row, "image")
    if image:
        p = Path(image).expanduser()
        if confine and root is not None:
            image_in_root(p, root)
        if not p.is_absolute() and root is not None:
            p = root / p
        return p, [p]
    if root is None:
        return None, []
    names = fallback_image_names(product_id(row))
    tried = [root / n for n in names if not confine or _stays_in(n, root)]
    return next((p for p in tried if p.is_file()), None), tried


def _stays_in(name: str, root: Path) -> bool:
    try:
        image_in_root(name, root)
    except DataError:
        return False
    return True


def fallback_image_names(product: str) -> list[str]:
    """`<product>.jpg` (.jpeg, .png, .webp): the names a product's image has under an image root
    when its row names none, the MEPAVE convention every front end follows."""
    return [f"{product}{ext}" for ext in IMAGE_EXTENSIONS]


def image_file_in_root(names: abc.Iterable[PathLike], root: PathLike) -> Path | None:
    """The real path of the first of `names` that is a regular file inside `root` by the rule
    of `image_in_root` (no `..`, no symlink out of it), or None. Asking whether there is an
    image to show (`mjave review`) then answers as reading it would."""
    for name in names:
        try:
            target = image_in_root(name, root)
        except DataError:
            continue
        if target.is_file():
            return target
    return None


def missing_image(tried: list[Path]) -> DataError:
    """The one error of a row without an image under the `missing_image="error"` policy."""
    where = (f"looked for {', '.join(map(str, tried))}" if tried
             else "give an image field or an image root")
    return DataError(f"no image ({where})", field="image", reason="missing image")


def find_image(row: Any, image_root: PathLike | None = None, policy: str = "zeros", *,
               confine: bool = False) -> Path | None:
    """The image path of a row as training resolves it; None when there is none and `policy`
    (the model's `missing_image`) allows that, else the `missing_image` DataError.
    `confine`: keep it inside `image_root` (`resolve_image_path`)."""
    path, tried = resolve_image_path(row, image_root, confine=confine)
    if path is None and policy == "error":
        raise missing_image(tried)
    return path


def to_item(row: Any, image_root: PathLike | None = None, *, uses_image: bool = True,
            missing_image: str = "zeros", confine: bool = False) -> dict[str, Any]:
    """The Extractor's item `{"text", "image", "category"}` of a row (a Record, a mapping with
    id/cid/text/image/category, or a reader row), as `Extractor.predict_batch` takes it.

    `image`: encoded bytes or a PIL image pass through; a path (or no image) is resolved by
    `find_image` against `image_root`; None when `uses_image` is False (a text-only model).
    Pass the model's own settings: `uses_image=extractor.uses_image,
    missing_image=extractor.missing_image` (then a model that needs an image and finds none
    raises the one `missing image` DataError here). `confine=True`: an image path must stay
    inside `image_root` (`image_in_root`; `mjave predict --image-root`, as the server).
    The text and category are not checked here:
    the Extractor checks them per item (`check_text`, `check_category`).
    """
    image = field_of(row, "image")
    if not uses_image:
        image = None
    elif image is None or isinstance(image, (str, os.PathLike)):
        image = find_image(row, image_root, missing_image, confine=confine)
    elif not isinstance(image, (bytes, bytearray)) and not hasattr(image, "convert"):
        check_image_field(image)  # a number, a list, ...: the one `bad image field` error
    return {"text": field_of(row, "text"), "image": image,
            "category": field_of(row, "category")}


__all__ = ["MAX_IMAGE_PIXELS", "MAX_NESTING", "MAX_TEXT_CHARS", "bad_category",
           "bad_image_field", "check_category", "check_id", "check_image_field",
           "check_image_pixels", "check_text", "check_values", "duplicate_id",
           "escape_surrogates", "fallback_image_names", "field_of", "find_image", "id_key",
           "image_file_in_root", "image_in_root",
           "int_too_long", "missing_image", "open_image_file", "product_id",
           "resolve_image_path", "short_repr", "to_item", "unencodable"]
