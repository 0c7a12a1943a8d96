"""The review service: `create_review_app(db, ...)` returns a FastAPI app over a `ReviewDB`.

The page (`/`, static files of `mjave.web`) talks to a small JSON API:

| method, path | what |
|---|---|
| `GET /api/meta` | counts per kind, attributes, categories, score range, the default reviewer |
| `POST /api/claim` | lease the next item of the queue (`kind`, filters, `after`, `order`) |
| `GET /api/stats` | per attribute: decisions and the precision they show, with a lower bound |
| `GET /api/items/{id}` | one item: text, highlight, decision, history |
| `POST /api/items/{id}/open` | lease a named item (going back) |
| `POST /api/items/{id}/decide` | record a decision (`action`, `edited_value`, `request_id`) |
| `POST /api/undo` | take back the reviewer's last decision (or one item's) |
| `POST /api/renew`, `POST /api/release` | keep or drop the page's leases |
| `GET /api/image/{id}` | the item's product image, read only from `image_root` |

Every answer is JSON; texts are never turned into HTML by the server or the page. Request bodies
are bounded (`max_body_bytes`, the middleware of `mjave serve`: `mjave.serving.limits`),
strings by their schema; a body that does not fit is a 422 from the error handlers of `mjave
serve` (`mjave.serving.errors`), which never echo a value. Images are served only from the
image root (the path comes from the products file, never from the request; `..`, symlinks out
of the root and anything but a regular file are refused by the rule of every front end,
`mjave.data.rows.image_in_root`, read as `mjave serve` reads them: `mjave.serving.images`),
only in the formats Pillow identifies as JPEG, PNG, WEBP, GIF or BMP.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from fastapi import FastAPI, HTTPException, Path as PathParam, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mjave import __version__
from mjave.data.rows import fallback_image_names, image_file_in_root
from mjave.review.db import Filters, ReviewDB, ReviewError
from mjave.review.order import DEFAULT_ORDER, ORDERS, QueueOrder
from mjave.serving.docs import offline_docs_app
from mjave.serving.errors import MAX_DETAIL, add_error_handlers, safe_text
from mjave.serving.images import (IMAGE_FORMATS, ClientError, read_image_path,
                                  real_image_root)
from mjave.serving.limits import BodyLimitMiddleware

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 10 * 1024 * 1024

Name = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
Session = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
ItemId = Annotated[int, PathParam(ge=0, le=2**62, description="an item id (/api/claim)")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimIn(_In):
    session: str = Session
    reviewer: str = Name
    kind: Literal["suggestion", "conflict"] = "suggestion"
    attribute: Optional[str] = Field(None, max_length=1000)
    category: Optional[str] = Field(None, max_length=1000)
    min_score: Optional[float] = Field(None, allow_inf_nan=False)
    max_score: Optional[float] = Field(None, allow_inf_nan=False)
    after: Optional[int] = Field(None, ge=0, le=2**62, description="skip to the item after this "
                                 "one in queue order")
    order: Optional[QueueOrder] = Field(None, description="score (best first), uncertainty "
                                        "(closest to 0.5 first), gain (uncertainty, round-"
                                        "robin over attributes) or random (a fair sample, "
                                        "which calibration may judge unreviewed rows by); "
                                        "default: the server's")


class OpenIn(_In):
    session: str = Session
    reviewer: str = Name


class DecideIn(_In):
    session: str = Session
    reviewer: str = Name
    action: Literal["accept", "reject", "edit", "keep_table", "keep_text"]
    edited_value: Optional[str] = Field(None, max_length=1000)
    request_id: Optional[str] = Field(None, min_length=8, max_length=64,
                                      pattern=r"^[A-Za-z0-9_-]+$")


class UndoIn(_In):
    session: str = Session
    reviewer: str = Name
    item_id: Optional[int] = Field(None, ge=0, le=2**62)


class SessionIn(_In):
    session: str = Session


class DecisionOut(BaseModel):
    id: int
    action: str
    edited_value: Optional[str] = None
    reviewer: str
    time: str
    undoes: Optional[int] = None


class ItemOut(BaseModel):
    id: int
    kind: str
    product_id: str
    attribute: str
    value: str = Field(description="the suggested value, or for a conflict the text's value")
    table_value: Optional[str] = Field(None, description="conflicts: the catalog's value")
    normalized_value: Optional[str] = None
    score: float
    category: Optional[str] = None
    record_id: Optional[str] = None
    text: Optional[str] = Field(None, description="the product text the value is in")
    highlight: Optional[list[int]] = Field(None, description="[begin, end) of the value in text")
    evidence: Optional[str] = None
    has_image: bool = False
    decision: Optional[DecisionOut] = None
    history: list[DecisionOut] = []
    held_by: Optional[str] = Field(None, description="reviewer holding the item, if any")


class ClaimOut(BaseModel):
    item: Optional[ItemOut]
    counts: dict[str, int]


STATS_CONFIDENCE = 0.9
"""Confidence of the page's precision lower bound (one-sided, 90 %)."""
ACCEPTING = {"suggestion": "accept", "conflict": "keep_text"}
REJECTING = {"suggestion": "reject", "conflict": "keep_table"}
"""The decision that confirms (refutes) the model's value: for a conflict, the text's value."""


class AttributeStats(BaseModel):
    attribute: str
    total: int
    decided: int
    accepted: int = Field(description="the model's value kept (conflicts: keep_text)")
    rejected: int = Field(description="the model's value refused (conflicts: keep_table)")
    edited: int = Field(description="another value entered: counts as not accepted")
    precision: Optional[float] = Field(None, description="accepted / decided; null: none decided")
    lower_bound: Optional[float] = Field(None, description="one-sided Wilson lower bound of the "
                                         "precision at `confidence`")


class StatsOut(BaseModel):
    kind: str
    confidence: float
    attributes: list[AttributeStats]
    overall: AttributeStats


def attribute_stats(db: ReviewDB, kind: str = "suggestion",
                    confidence: float = STATS_CONFIDENCE) -> StatsOut:
    """Per attribute (and over all, `attribute` "*"), what the reviews say of the model's
    precision: an attribute that fails shows here instead of being averaged away. Edits count
    as not accepted: the model's value was wrong."""
    from mjave.completion.calibrate import precision_lower_bound

    def one(attribute: str, counts: dict[str, int]) -> AttributeStats:
        decided, accepted = counts["decided"], counts.get(ACCEPTING[kind], 0)
        return AttributeStats(
            attribute=attribute, total=counts["total"], decided=decided, accepted=accepted,
            rejected=counts.get(REJECTING[kind], 0), edited=counts.get("edit", 0),
            precision=accepted / decided if decided else None,
            lower_bound=precision_lower_bound(accepted, decided, confidence) if decided
            else None)
    attributes = [one(a, db.counts(kind, Filters(attribute=a)))
                  for a in db.facets(kind)["attributes"]]
    return StatsOut(kind=kind, confidence=confidence, attributes=attributes,
                    overall=one("*", db.counts(kind)))


def _decision(d: Optional[dict[str, Any]]) -> Optional[DecisionOut]:
    if not d:
        return None
    return DecisionOut(id=d["id"], action=d["action"], edited_value=d.get("edited_value"),
                       reviewer=d["reviewer"], time=d["time"], undoes=d.get("undoes"))


def image_candidates(item: dict[str, Any]) -> list[str]:
    """The names an item's product image may have under the image root: its record's own,
    else the product id's (`mjave.data.rows.fallback_image_names`)."""
    if item.get("image"):
        return [item["image"]]
    return fallback_image_names(item["product_id"])


def item_out(item: dict[str, Any], root: Optional[Path]) -> ItemOut:
    """The answer for one item of `ReviewDB`; `has_image` by the image-root rule of every front
    end, so the page offers an image only where /api/image may find one."""
    hl = None
    if item.get("hl_begin") is not None and item.get("hl_end") is not None:
        hl = [int(item["hl_begin"]), int(item["hl_end"])]
    lease = item.get("lease")
    has_image = root is not None and image_file_in_root(image_candidates(item), root) is not None
    return ItemOut(id=item["id"], kind=item["kind"], product_id=item["product_id"],
                   attribute=item["attribute"], value=item["value"],
                   table_value=item.get("table_value"),
                   normalized_value=item.get("normalized_value"), score=item["score"],
                   category=item.get("category"), record_id=item.get("record_id"),
                   text=item.get("text"), highlight=hl, evidence=item.get("evidence"),
                   has_image=has_image, decision=_decision(item.get("decision")),
                   history=[_decision(h) for h in item.get("history", [])],
                   held_by=lease["reviewer"] if lease else None)


def read_product_image(item: dict[str, Any], root: Path, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and media type of an item's product image, read as `mjave serve` reads an
    `image_path` (`mjave.serving.images.read_image_path`); an HTTPException otherwise (404
    without a file, 400/413 for one that may not be read, 415 for one in no allowed format)."""
    last: Optional[ClientError] = None
    for name in image_candidates(item):
        try:
            raw = read_image_path(name, root, max_bytes)
        except ClientError as e:
            last = e
            continue
        from PIL import Image
        try:
            with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as img:
                fmt = img.format
        except Exception:
            raise HTTPException(415, "the product image is not a JPEG, PNG, WEBP, GIF "
                                     "or BMP file") from None
        return raw, f"image/{str(fmt).lower()}"
    status = 404 if last is None or "no such file" in last.message else last.status
    raise HTTPException(status, f"image: {last.message if last else 'none'}")


def create_review_app(db: ReviewDB, image_root: str | Path | None = None,
                      reviewer: str = "reviewer", max_body_bytes: int = MAX_BODY_BYTES,
                      max_image_bytes: int = MAX_IMAGE_BYTES,
                      order: QueueOrder = DEFAULT_ORDER) -> FastAPI:
    """The review app over `db`. `image_root`: the only folder product images are read from
    (None: no images shown). `reviewer`: the name the page suggests. `order`: the queue order of
    a claim that names none (`mjave.review.order`). One piece, as FastAPI apps are written:
    each route is a closure of a few lines over `db` and the image root."""
    if order not in ORDERS:
        raise ValueError(f"queue order {order!r}: use one of {', '.join(ORDERS)}")
    root = real_image_root(image_root)
    app = offline_docs_app(title="M-JAVE review", version=__version__,   # docs without a CDN
                           description="Review completion suggestions and conflicts.")
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    add_error_handlers(app)   # the 422s of `mjave serve`: NaN or "\ud800" in a body is no 500
    app.state.db = db

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError) -> JSONResponse:
        return JSONResponse(status_code=exc.status,
                            content={"detail": safe_text(exc, MAX_DETAIL)})

    def counts(kind: str, filters: Filters = Filters()) -> dict[str, int]:
        return db.counts(kind, filters)

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        """What the page needs to draw its tabs and filters."""
        return {"reviewer": reviewer, "lease_seconds": db.lease_seconds, "order": order,
                "orders": list(ORDERS),
                "kinds": {k: {"counts": counts(k), **db.facets(k)}
                          for k in ("suggestion", "conflict")},
                "images": root is not None}

    @app.post("/api/claim", response_model=ClaimOut)
    def claim(body: ClaimIn) -> ClaimOut:
        """Lease and return the next undecided item (None when the queue is empty)."""
        filters = Filters(body.attribute or None, body.category or None, body.min_score,
                          body.max_score)
        item = db.claim(body.session, body.reviewer, body.kind, filters, after=body.after,
                        order=body.order or order)
        return ClaimOut(item=item_out(item, root) if item else None,
                        counts=counts(body.kind, filters))

    @app.get("/api/stats", response_model=StatsOut)
    def stats(kind: Literal["suggestion", "conflict"] = "suggestion") -> StatsOut:
        """Per attribute: decided, accepted, rejected, edited, and the precision they show."""
        return attribute_stats(db, kind)

    @app.get("/api/items/{item_id}", response_model=ItemOut)
    def get_item(item_id: ItemId) -> ItemOut:
        return item_out(db.item(item_id), root)

    @app.post("/api/items/{item_id}/open", response_model=ItemOut)
    def open_item(item_id: ItemId, body: OpenIn) -> ItemOut:
        return item_out(db.open(item_id, body.session, body.reviewer), root)

    @app.post("/api/items/{item_id}/decide", response_model=ItemOut)
    def decide(item_id: ItemId, body: DecideIn) -> ItemOut:
        db.decide(item_id, body.action, body.reviewer, session=body.session,
                  edited_value=body.edited_value, request_id=body.request_id)
        return item_out(db.item(item_id), root)

    @app.post("/api/undo", response_model=ItemOut)
    def undo(body: UndoIn) -> ItemOut:
        return item_out(db.undo(body.reviewer, body.session, body.item_id), root)

    @app.post("/api/renew")
    def renew(body: SessionIn) -> dict[str, int]:
        return {"leases": db.renew(body.session)}

    @app.post("/api/release")
    def release(body: SessionIn) -> dict[str, str]:
        db.release(body.session)
        return {"status": "released"}

    def read_image(item_id: int) -> tuple[bytes, str]:
        if root is None:   # before the database: no item lookup without images
            raise HTTPException(404, "the server was started without --image-root")
        return read_product_image(db.item(item_id), root, max_image_bytes)

    @app.get("/api/image/{item_id}")
    async def image(item_id: ItemId) -> Response:
        """The item's product image, from the image root only."""
        raw, media = await run_in_threadpool(read_image, item_id)
        return Response(raw, media_type=media, headers={"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "private, max-age=600"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    from mjave.web import add_static_routes
    add_static_routes(app, pages={"/": "review.html"})
    return app


__all__ = ["AttributeStats", "StatsOut", "attribute_stats", "create_review_app"]
