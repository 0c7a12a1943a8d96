"""The HTTP service: `create_app(extractor, config)` returns a FastAPI app around a loaded model.

Endpoints: `POST /v1/extract` (one item or `{"items": [...]}`; `"explain": true` adds the
visual gates and token offsets), `GET /healthz` (the process is alive), `GET /readyz` (the model
is loaded and the micro-batcher runs), `GET /v1/model` (schema, version, info), FastAPI's
`/openapi.json` with `/docs` and `/redoc` (bundled files, no CDN: `mjave.serving.docs`), and
the try page at `/` (static files of `mjave.web`, no CDN).

Client input never causes a 500: a body, item count, text or image over its limit is 413 (the
message names the limit), a body that does not fit the schema 422 (`mjave.serving.errors`, which
echoes no value, so NaN or a lone surrogate anywhere is a 422 too), bad base64, an undecodable
image or an `image_path` the server may not read 400. `image_path` is read only when the server
was given an image root, and only for regular files whose real path (symlinks resolved) lies
inside it. Nothing is unpickled; images are decoded by Pillow from an allow-list of formats.
"""

import asyncio
import base64
import binascii
import inspect
import io
import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Optional, Protocol, Sequence, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      create_model, field_validator, model_validator)
from starlette.concurrency import run_in_threadpool

from mjave import __version__
from mjave.data.errors import DataError
from mjave.data.rows import check_image_pixels, check_text, image_in_root, open_image_file
from mjave.serving.batcher import (BatcherNotRunning, BatcherOverloaded, DeadlineExceeded,
                                   ItemFailed, MicroBatcher)
from mjave.serving.config import ServeConfig
from mjave.serving.docs import offline_docs_app
from mjave.serving.errors import ErrorOut, ValidationErrorOut, add_error_handlers

__all__ = ["ServeConfig", "create_app", "ExtractorLike"]

log = logging.getLogger(__name__)

# Common web formats only: every decoder Pillow is allowed to run is attack surface.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class ExtractorLike(Protocol):
    """What the service needs of `mjave.inference.extractor.Extractor` (and of test fakes)."""

    @property
    def version(self) -> Union[str, dict[str, Any]]: ...

    @property
    def schema(self) -> Any: ...

    @property
    def info(self) -> dict[str, Any]: ...

    def predict_batch(self, items: list[dict[str, Any]]) -> Sequence[dict[str, Any]]: ...

    # Optional: `supports_explain = True` when items may carry "explain": True and results then
    # hold an "explain" dict (`mjave.inference.extractor.explain_dict`). Without it, `explain`
    # in a request is accepted and answered without the `explain` field.


# ---- request and response models (they make the OpenAPI document) ----

class ExtractItem(BaseModel):
    """One product: its text and optionally its image (inline base64 or a path under the root)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"id": "sku-1", "text": "red shirt with blue shoes, slim fit", "category": "shirts"}]})

    id: Optional[Union[Annotated[str, Field(max_length=256)], int]] = Field(
        None, description="echoed back in the result")
    text: str = Field(description="the product text (title): not empty, at most max_text_chars "
                      "characters")
    category: Optional[Annotated[str, Field(max_length=1000)]] = Field(
        None, description="the product's category: a model trained with "
        "`model.restrict_to_category` decodes only the attributes seen with it in training, as "
        "`mjave predict` and `mjave evaluate` do (an unknown category restricts nothing)")
    image_base64: Optional[str] = Field(
        None, description="the image file (JPEG, PNG, WEBP, GIF or BMP), base64-encoded; a "
        "`data:image/...;base64,` prefix is accepted")
    image_path: Optional[Annotated[str, Field(max_length=4096)]] = Field(
        None, description="an image file relative to the server's --image-root (refused when "
        "the server has none)")
    explain: bool = Field(False, description="also return the token offsets and the visual "
                          "gates (`explain` in the result)")

    @field_validator("text")
    @classmethod
    def _real_text(cls, v: str) -> str:
        """Empty texts have nothing to tag, and lone surrogates ("\\ud800") are valid JSON but
        no text (the tokenizer would fail): both are refused before they reach the model, by
        the row check every front end runs (`mjave.data.rows.check_text`; the length is
        checked against `max_text_chars` later, as a 413)."""
        try:
            return check_text(v, max_chars=None)
        except DataError as e:
            raise ValueError(e.message) from None

    @model_validator(mode="after")
    def _one_image(self) -> "ExtractItem":
        if self.image_base64 is not None and self.image_path is not None:
            raise ValueError("give image_base64 or image_path, not both")
        return self


class ExtractBatch(BaseModel):
    """Several items in one request (at most max_request_items); results keep their order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [{"id": 1, "text": "red shirt, slim fit"}, {"id": 2, "text": "blue shoes"}]}]})

    items: list[ExtractItem]
    explain: bool = Field(False, description="explain every item (as `explain` on each)")


def _request_kind(v: Any) -> str:
    """Pick the branch by the `items` key, so errors describe one shape, not both."""
    if isinstance(v, ExtractBatch) or (isinstance(v, dict) and "items" in v):
        return "batch"
    return "single"


def request_type(max_items: int) -> Any:
    """The body type of /v1/extract: an item or a batch of at most `max_items`. The bound is in
    the schema so that pydantic stops at the length check: validating 2 million tiny items
    before counting them would take half a minute."""
    batch = create_model("ExtractBatch", __base__=ExtractBatch,
                         items=(list[ExtractItem], Field(max_length=max_items)))
    return Annotated[Union[Annotated[ExtractItem, Tag("single")], Annotated[batch, Tag("batch")]],
                     Discriminator(_request_kind)]


class AttributeOut(BaseModel):
    name: str
    score: float = Field(description="predicted probability of the attribute")


class ValueOut(BaseModel):
    attribute: str
    value: str = Field(description="text[begin:end]")
    begin: int = Field(description="character offset in the text (inclusive)")
    end: int = Field(description="character offset in the text (exclusive)")
    score: float = Field(description="mean probability of the tags of the span")


class TokenOut(BaseModel):
    text: str = Field(description="text[begin:end]: one tokenizer piece")
    begin: int = Field(description="character offset in the text (inclusive)")
    end: int = Field(description="character offset in the text (exclusive)")
    global_gate: Optional[float] = Field(description="the global visual gate g^G at this piece "
                                         "(Eq. 6), averaged over the attention size; null when "
                                         "the model has no global gate (text-only models)")


class ExplainOut(BaseModel):
    """Why the model extracted what it did (the paper's Figure 5), for one item."""

    tokens: list[TokenOut] = Field(description="the pieces of the text in order ([CLS]/[SEP] "
                                   "left out)")
    regional_gate: Optional[list[list[float]]] = Field(
        description="the regional visual gate g^R (Eq. 10) per image region, averaged over the "
        "attention size, as rows of a grid (7x7); null without an image or for text-only models")
    image_attention: Optional[list[list[float]]] = Field(
        description="the attention of the pieces over the image regions (Eq. 3-4), averaged over "
        "the pieces, same grid; null without an image or for text-only models")
    grid: Optional[list[int]] = Field(description="[rows, columns] of the grids, or null")
    attribute_probs: dict[str, float] = Field(description="the probability of every attribute")


class ExtractResult(BaseModel):
    id: Optional[Union[str, int]] = None
    attributes: list[AttributeOut] = Field(description="predicted attributes, by score")
    values: list[ValueOut] = Field(description="extracted values, in text order")
    warning: Optional[str] = Field(None, description="e.g. predicted without the image")
    explain: Optional[ExplainOut] = Field(None, description="present when the request asked "
                                          "for it (`explain: true`) and the model can explain "
                                          "(mjave's extractor can)")

    def as_json(self) -> dict[str, Any]:
        """Top-level None fields left out; inside `explain` the nulls are kept (they mean "this
        model has no such gate"). Serialised by pydantic, so a NaN score becomes null as with a
        response model."""
        out = json.loads(self.model_dump_json(exclude_none=True, exclude={"explain"}))
        if self.explain is not None:
            out["explain"] = json.loads(self.explain.model_dump_json())
        return out


class ExtractBatchResult(BaseModel):
    items: list[ExtractResult]


class ModelOut(BaseModel):
    version: Union[str, dict[str, Any]]
    attributes: list[str]
    tags: list[str]
    info: dict[str, Any]
    limits: dict[str, Any]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    batcher: dict[str, Any]


_ERRORS = {400: {"model": ErrorOut, "description": "bad base64, undecodable image, or an "
                 "image_path the server may not read"},
           413: {"model": ErrorOut, "description": "body, item count, text or image over a limit"},
           422: {"model": ValidationErrorOut, "description": "the body does not fit the schema"},
           500: {"model": ErrorOut, "description": "server fault (logged)"},
           503: {"model": ErrorOut, "description": "not ready, shutting down or overloaded"},
           504: {"model": ErrorOut, "description": "the request's deadline (request_timeout_s) "
                 "passed; its items not yet computed were dropped"}}


# ---- input checks ----

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


def decode_image(raw: bytes, config: ServeConfig, field: str) -> Any:
    """An RGB PIL image, fully decoded here so the model thread never meets a broken file."""
    from PIL import Image
    try:
        img = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
        check_image_pixels(img.size, config.max_image_pixels)  # the limit of every front end
        img.load()
        return img.convert("RGB")
    except DataError as e:
        raise ClientError(413, f"{field}: {e.message}") from None
    except Image.DecompressionBombError:
        raise ClientError(413, f"{field}: the image has more pixels than the limit of "
                               f"{config.max_image_pixels}") from None
    except Exception:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise ClientError(400, f"{field} could not be decoded as an image (accepted formats: "
                               f"{', '.join(IMAGE_FORMATS)})") from None


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


def prepare_items(items: Sequence[ExtractItem], config: ServeConfig, root: Optional[Path],
                  prefix: Sequence[str], explain: bool = False, can_explain: bool = True
                  ) -> list[dict[str, Any]]:
    """The extractor's items ({"text", "image", "category"}, plus "explain": True when asked
    for, by the item or by `explain` for all, and `can_explain`); raises an HTTPException
    naming the item."""
    out = []
    for item, where in zip(items, prefix):
        try:
            if len(item.text) > config.max_text_chars:
                raise ClientError(413, f"text has {len(item.text)} characters; the limit is "
                                       f"{config.max_text_chars}")
            image = None
            if item.image_base64 is not None:
                raw = decode_base64(item.image_base64, config.max_image_bytes)
                image = decode_image(raw, config, "image_base64")
            elif item.image_path is not None:
                raw = read_image_path(item.image_path, root, config.max_image_bytes)
                image = decode_image(raw, config, "image_path")
        except ClientError as e:
            raise HTTPException(e.status, where + e.message) from None
        prepared = {"text": item.text, "image": image, "category": item.category}
        if can_explain and (explain or item.explain):
            prepared["explain"] = True
        out.append(prepared)
    return out


# ---- the app ----

class BodyLimitMiddleware:
    """413 for bodies over `max_body_bytes`, by Content-Length up front or by counting chunked
    bodies as they arrive (the body is buffered once and replayed to the app)."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse(status_code=413, content={
            "detail": f"request body is larger than the limit of {self.max_body_bytes} bytes"})
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await JSONResponse(status_code=400, content={
                        "detail": "invalid Content-Length header"})(scope, receive, send)
                    return
                if declared > self.max_body_bytes:
                    await too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _schema_lists(schema: Any) -> tuple[list[str], list[str]]:
    attributes = [str(a) for a in getattr(schema, "attributes", ())]
    tags = [str(t) for t in getattr(schema, "tags", ())]
    return attributes, tags


def _predict_fn(extractor: ExtractorLike) -> Any:
    """`predict_batch`, asking for per-item errors when the extractor offers them
    (`errors="return"`): one bad item then costs no retry of its whole batch."""
    try:
        accepts_errors = "errors" in inspect.signature(extractor.predict_batch).parameters
    except (TypeError, ValueError):
        accepts_errors = False
    if not accepts_errors:
        return extractor.predict_batch

    def predict(items: list[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        return extractor.predict_batch(items, errors="return")  # type: ignore[call-arg]
    return predict


class ClientGone(Exception):
    """The HTTP client closed its connection while its items waited for the model."""


async def until_disconnected(request: Request) -> None:
    """Return once the client has closed the connection. The body is already read, so the
    next ASGI message is `http.disconnect` (uvicorn also resumes reading the socket for it)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # not expected after the body; never spin


async def submit_while_connected(batcher: MicroBatcher, request: Request,
                                 items: list[dict[str, Any]],
                                 timeout: Optional[float]) -> list[dict[str, Any]]:
    """`batcher.submit(items, timeout)`, cancelled (so its queued items are dropped, never
    computed) as soon as the client goes away; raises `ClientGone` then."""
    work = asyncio.ensure_future(batcher.submit(items, timeout=timeout))
    gone = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this task itself is cancelled
        gone.cancel()
        if not work.done():
            work.cancel()
    if not work.done() or work.cancelled():
        raise ClientGone()
    return work.result()


def create_app(extractor: ExtractorLike, config: Optional[ServeConfig] = None) -> FastAPI:
    """The FastAPI app serving `extractor` (already loaded). The micro-batcher starts and stops
    with the app's lifespan, so /readyz is 503 before startup and after shutdown."""
    config = config or ServeConfig()
    root: Optional[Path] = None
    if config.image_root is not None:
        root = Path(config.image_root).resolve(strict=True)
        if not root.is_dir():
            raise NotADirectoryError(f"image root is not a folder: {config.image_root}")
    batcher = MicroBatcher(_predict_fn(extractor), max_batch_size=config.max_batch_size,
                           max_wait_ms=config.max_wait_ms,
                           max_queue_items=config.max_queue_items)
    attributes, tags = _schema_lists(extractor.schema)
    limits = {k: v for k, v in asdict(config).items() if k != "image_root"}
    limits["image_path"] = root is not None
    version = extractor.version
    model_body = ModelOut(version=version if isinstance(version, dict) else str(version),
                          attributes=attributes, tags=tags, info=dict(extractor.info or {}),
                          limits=limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        log.info("ready: batches of up to %d items, %.1f ms wait", config.max_batch_size,
                 config.max_wait_ms)
        try:
            yield
        finally:
            await batcher.stop()

    # /docs and /redoc from bundled Swagger UI / ReDoc files (`mjave.serving.docs`): FastAPI's
    # own pages load them from a CDN, so behind a catalog team's firewall they stay blank.
    app = offline_docs_app(title="M-JAVE attribute extraction", version=__version__,
                           lifespan=lifespan,
                           description="Multimodal attribute prediction and value extraction. "
                           f"Limits: {limits}.")
    app.state.batcher = batcher
    app.state.config = config
    app.state.extractor = extractor
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes)

    add_error_handlers(app, max_items=config.max_request_items)

    @app.get("/healthz", response_model=HealthOut, tags=["health"])
    async def healthz() -> dict:
        """The process is alive and answering (no model needed)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyOut, tags=["health"],
             responses={503: {"model": ErrorOut, "description": "not ready"}})
    async def readyz() -> Any:
        """The model is loaded and the micro-batcher is running: send traffic."""
        if not batcher.running:
            return JSONResponse(status_code=503, content={"detail": "not ready: the batcher is "
                                                          "not running"})
        return {"status": "ready", "batcher": batcher.stats.as_dict()}

    @app.get("/v1/model", response_model=ModelOut, tags=["model"])
    async def model() -> ModelOut:
        """The model's attribute schema, version and description, and the server's limits."""
        return model_body

    @app.post("/v1/extract", response_model=Union[ExtractResult, ExtractBatchResult],
              response_model_exclude_none=True, responses=_ERRORS, tags=["extract"])
    async def extract(request: Request,
                      body: request_type(config.max_request_items)) -> Any:  # type: ignore
        """Attributes and values of one item, or of `{"items": [...]}` (results in order)."""
        started = asyncio.get_running_loop().time()
        batch = isinstance(body, ExtractBatch)
        items = body.items if batch else [body]
        if len(items) > config.max_request_items:
            raise HTTPException(413, f"{len(items)} items in one request; the limit is "
                                     f"{config.max_request_items}")
        prefix = [f"items[{i}]: " if batch else "" for i in range(len(items))]
        explain_all = batch and body.explain
        can_explain = bool(getattr(extractor, "supports_explain", False))
        if any(i.image_base64 is not None or i.image_path is not None for i in items):
            prepared = await run_in_threadpool(prepare_items, items, config, root, prefix,
                                               explain_all, can_explain)
        else:
            prepared = prepare_items(items, config, root, prefix, explain_all, can_explain)
        timeout = config.request_timeout
        if timeout is not None:
            timeout -= asyncio.get_running_loop().time() - started
        try:
            results = await submit_while_connected(batcher, request, prepared, timeout)
        except ClientGone:  # nobody to answer; its queued items were dropped
            log.info("client went away; the %d items of its request still queued were dropped",
                     len(prepared))
            return JSONResponse(status_code=499, content={"detail": "client closed request"})
        except DeadlineExceeded:
            raise HTTPException(504, f"deadline exceeded: the request was not done within "
                                     f"{config.request_timeout_s:g} s (request_timeout_s); "
                                     "retry later or with fewer items") from None
        except (BatcherNotRunning, BatcherOverloaded) as e:
            raise HTTPException(503, f"service unavailable: {e}",
                                headers={"Retry-After": "1"}) from None
        except ItemFailed as e:
            i = next((k for k, p in enumerate(prepared) if p is e.item), None)
            cause = e.__cause__
            if isinstance(cause, DataError):  # the model's own verdict on the input
                raise HTTPException(400, f"{prefix[i] if i is not None else ''}{cause}") \
                    from None
            log.error("prediction failed: %s", e, exc_info=cause)
            raise HTTPException(500, "internal error while predicting; the server log has the "
                                     "details") from None
        for where, r in zip(prefix, results):
            if isinstance(r, dict) and "error" in r:  # errors="return": the model refused it
                raise HTTPException(400, f"{where}{r['error']}")
        try:
            out = [ExtractResult(id=item.id, attributes=r["attributes"], values=r["values"],
                                 warning=r.get("warning"),
                                 explain=r.get("explain") if p.get("explain") else None)
                   for item, r, p in zip(items, results, prepared)]
        except (KeyError, TypeError, AttributeError, ValidationError):
            log.exception("the extractor returned a malformed result")
            raise HTTPException(500, "internal error: malformed prediction") from None
        if batch:
            return JSONResponse({"items": [o.as_json() for o in out]})
        return JSONResponse(out[0].as_json())

    from mjave.web import add_static_routes
    add_static_routes(app, pages={"/": "try.html"})

    return app
