"""`ServeConfig`: the service's batching knobs and input limits (no FastAPI import here, so the
CLI can show the defaults without the [serve] extra)."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any, Optional

from mjave.data.rows import MAX_IMAGE_PIXELS  # the one default of every front end

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """Batching knobs and input limits. Limits bound the memory and CPU one request can take."""

    max_batch_size: int = 32          # items per model call
    max_wait_ms: float = 5.0          # how long the oldest waiting item may wait for company
    max_request_items: int = 64       # items in one {"items": [...]} request
    max_text_chars: int = 20_000      # characters per text
    max_image_bytes: int = 10 * MiB   # encoded image size (decoded from base64 or on disk)
    max_body_bytes: int = 32 * MiB    # whole request body (a 10 MiB image is ~13.4 MiB base64)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # width x height, checked before decoding
    max_queue_items: int = 10_000     # items waiting for the model before 503 "overloaded"
    image_root: Optional[str] = None  # the only folder `image_path` may read from
    request_timeout_s: float = 60.0   # deadline of one request (0: none); then 504, items dropped
    shutdown_timeout_s: float = 10.0  # on SIGTERM, how long queued items may finish; then 503

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_request_items", "max_text_chars", "max_image_bytes",
                     "max_body_bytes", "max_image_pixels", "max_queue_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "request_timeout_s", "shutdown_timeout_s"):
            if not getattr(self, name) >= 0:  # NaN included
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")

    @property
    def request_timeout(self) -> Optional[float]:
        """The request deadline in seconds, or None when there is none (`request_timeout_s`
        0)."""
        return self.request_timeout_s or None


DEFAULTS: dict[str, Any] = asdict(ServeConfig())


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a service (which has no authentication) on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
