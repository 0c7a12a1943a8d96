"""Images from HTTP clients, turned into decoded pictures or a 4xx (`ClientError`).

Shared on purpose by `mjave serve` (`image_base64`, `image_path`) and `mjave review` (its
product images), so both read files under an image root by the one rule of
`mjave.data.rows` (`image_in_root`, `open_image_file`) and allow the same formats. Decoding is
`mjave.encoders.image.decode_image`, the decoder of every front end; this module only maps its
errors to HTTP statuses and messages.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Any, Optional, Union

from mjave.data.errors import DataError
from mjave.data.rows import image_in_root, open_image_file

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
"""Common web formats only: every decoder Pillow is allowed to run is attack surface."""


class ClientError(Exception):
    """A 4xx decided while preparing items; turned into an HTTPException with a location."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_base64(data: str, max_bytes: int) -> bytes:
    """Strict base64 (whitespace and a data-URL prefix allowed), refused before decoding when
    the encoded length alone shows the image is over the limit."""
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ClientError(400, "image_base64: a data URL must look like "
                                   "'data:image/png;base64,...'")
    data = re.sub(r"\s+", "", data)
    if len(data) // 4 * 3 > max_bytes + 2:
        raise ClientError(413, f"image_base64: the image is larger than the limit of "
                               f"{max_bytes} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(400, "image_base64 is not valid base64") from None
    if len(raw) > max_bytes:
        raise ClientError(413, f"image_base64: the image has {len(raw)} bytes; the limit is "
                               f"{max_bytes}")
    return raw


def decode_image(raw: bytes, max_pixels: int, field: str) -> Any:
    """An RGB PIL image, fully decoded here so the model thread never meets a broken file: a
    413 over `max_pixels` (the limit of every front end), a 400 for anything Pillow cannot
    decode from `IMAGE_FORMATS`."""
    # Imported here: it brings torch, which `mjave review` (a user of this module) never needs.
    from mjave.encoders.image import decode_image as decode_pixels
    try:
        return decode_pixels(io.BytesIO(raw), max_pixels, formats=IMAGE_FORMATS)
    except DataError as e:
        too_large = e.message if e.reason == "image too large" else None
    except Exception:  # Pillow raises many types (struct.error, IndexError, ...)
        too_large = None
    if too_large is not None:
        raise ClientError(413, f"{field}: {too_large}")
    raise ClientError(400, f"{field} could not be decoded as an image (accepted formats: "
                           f"{', '.join(IMAGE_FORMATS)})")


def real_image_root(path: Optional[Union[str, Path]]) -> Optional[Path]:
    """The real path of an app's image root (None: no images read); a missing folder fails at
    startup, not at the first request."""
    if path is None:
        return None
    root = Path(path).resolve(strict=True)
    if not root.is_dir():
        raise NotADirectoryError(f"image root is not a folder: {path}")
    return root


def read_image_path(path: str, root: Optional[Path], max_bytes: int) -> bytes:
    """The bytes of `path` under `root`, or a 400/413. The rule of `mjave predict
    --image-root` (`mjave.data.rows.image_in_root`, `open_image_file`) refuses: no root, '..'
    components, a real path (after symlinks) outside the root, anything but a regular file."""
    if root is None:
        raise ClientError(400, "image_path is not accepted: the server was started without an "
                               "image root (--image-root); send image_base64 instead")
    try:
        target = image_in_root(path, root)
        with open_image_file(target, max_bytes, follow_symlinks=False) as f:
            raw = f.read(max_bytes + 1)
    except DataError as e:
        status = 413 if e.reason == "image too large" else 400
        raise ClientError(status, f"image_path: {e.message}") from None
    except OSError:
        raise ClientError(400, "image_path cannot be read") from None
    if len(raw) > max_bytes:
        raise ClientError(413, f"image_path: the image is larger than the limit of {max_bytes} "
                               "bytes")
    return raw


__all__ = ["ClientError", "IMAGE_FORMATS", "decode_base64", "decode_image", "read_image_path",
           "real_image_root"]
