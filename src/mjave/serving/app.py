"""The HTTP service: `create_app(extractor, config)` returns a FastAPI app around a loaded model.

Endpoints: `POST /v1/extract` (one item or `{"items": [...]}`; `"explain": true` adds the
visual gates and token offsets), `GET /healthz` (the process is alive), `GET /readyz` (the model
is loaded and the micro-batcher runs), `GET /v1/model` (schema, version, info), FastAPI's
`/openapi.json` with `/docs` and `/redoc` (bundled files, no CDN: `mjave.serving.docs`), and
the try page at `/` (static files of `mjave.web`, no CDN).

Client input never causes a 500: a body, item count, text or image over its limit is 413 (the
message names the limit; the body cap is `mjave.serving.limits`), a body that does not fit the
schema (`mjave.serving.schemas`) 422 (`mjave.serving.errors`, which echoes no value, so NaN or
a lone surrogate anywhere is a 422 too), bad base64, an undecodable image or an `image_path`
the server may not read 400 (`mjave.serving.images`). `image_path` is read only when the
server was given an image root, and only for regular files whose real path (symlinks
resolved) lies inside it. Nothing is unpickled; images are decoded by Pillow from an
allow-list of formats.
"""

import asyncio
import inspect
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Protocol, Sequence, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mjave import __version__
from mjave.data.errors import DataError
from mjave.serving.batcher import (BatcherNotRunning, BatcherOverloaded, DeadlineExceeded,
                                   ItemFailed, MicroBatcher)
from mjave.serving.config import ServeConfig
from mjave.serving.docs import offline_docs_app
from mjave.serving.errors import ErrorOut, add_error_handlers
from mjave.serving.images import (ClientError, decode_base64, decode_image, read_image_path,
                                  real_image_root)
from mjave.serving.limits import BodyLimitMiddleware
from mjave.serving.schemas import (EXTRACT_ERRORS, ExtractBatch, ExtractBatchResult,
                                   ExtractItem, ExtractResult, HealthOut, ModelOut, ReadyOut,
                                   request_type)

__all__ = ["ServeConfig", "create_app", "ExtractorLike"]

log = logging.getLogger(__name__)


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


# ---- from a request to the extractor and back ----

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
                image = decode_image(raw, config.max_image_pixels, "image_base64")
            elif item.image_path is not None:
                raw = read_image_path(item.image_path, root, config.max_image_bytes)
                image = decode_image(raw, config.max_image_pixels, "image_path")
        except ClientError as e:
            raise HTTPException(e.status, where + e.message) from None
        prepared = {"text": item.text, "image": image, "category": item.category}
        if can_explain and (explain or item.explain):
            prepared["explain"] = True
        out.append(prepared)
    return out


def predict_fn(extractor: ExtractorLike) -> Any:
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


async def predict_items(batcher: MicroBatcher, request: Request, prepared: list[dict[str, Any]],
                        prefix: Sequence[str], config: ServeConfig,
                        timeout: Optional[float]) -> list[dict[str, Any]]:
    """The extractor's results of `prepared`, or the HTTPException of why there are none:
    504 past the deadline, 503 when the batcher cannot take them, 400 when the model refuses
    an item's input (naming it), 500 for a model fault (logged). `ClientGone` passes through."""
    try:
        results = await submit_while_connected(batcher, request, prepared, timeout)
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
            raise HTTPException(400, f"{prefix[i] if i is not None else ''}{cause}") from None
        log.error("prediction failed: %s", e, exc_info=cause)
        raise HTTPException(500, "internal error while predicting; the server log has the "
                                 "details") from None
    for where, r in zip(prefix, results):
        if isinstance(r, dict) and "error" in r:  # errors="return": the model refused it
            raise HTTPException(400, f"{where}{r['error']}")
    return results


def result_models(items: Sequence[ExtractItem], results: Sequence[dict[str, Any]],
                  prepared: Sequence[dict[str, Any]]) -> list[ExtractResult]:
    """The answer's results (ids echoed, `explain` only where it was asked for); a 500 when
    the extractor returned something malformed."""
    try:
        return [ExtractResult(id=item.id, attributes=r["attributes"], values=r["values"],
                              warning=r.get("warning"),
                              explain=r.get("explain") if p.get("explain") else None)
                for item, r, p in zip(items, results, prepared)]
    except (KeyError, TypeError, AttributeError, ValidationError):
        log.exception("the extractor returned a malformed result")
        raise HTTPException(500, "internal error: malformed prediction") from None


# ---- the app ----

def model_description(extractor: ExtractorLike, limits: dict[str, Any]) -> ModelOut:
    """The body of `GET /v1/model`, built once: it does not change while the app runs."""
    attributes = [str(a) for a in getattr(extractor.schema, "attributes", ())]
    tags = [str(t) for t in getattr(extractor.schema, "tags", ())]
    version = extractor.version
    return ModelOut(version=version if isinstance(version, dict) else str(version),
                    attributes=attributes, tags=tags, info=dict(extractor.info or {}),
                    limits=limits)


def create_app(extractor: ExtractorLike, config: Optional[ServeConfig] = None) -> FastAPI:
    """The FastAPI app serving `extractor` (already loaded). The micro-batcher starts and stops
    with the app's lifespan, so /readyz is 503 before startup and after shutdown. One piece,
    as FastAPI apps are written: the routes are closures over the batcher, the root and the
    config they serve, each a few lines over the helpers above."""
    config = config or ServeConfig()
    root = real_image_root(config.image_root)
    batcher = MicroBatcher(predict_fn(extractor), max_batch_size=config.max_batch_size,
                           max_wait_ms=config.max_wait_ms,
                           max_queue_items=config.max_queue_items)
    limits = {k: v for k, v in asdict(config).items() if k != "image_root"}
    limits["image_path"] = root is not None
    model_body = model_description(extractor, limits)

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
              response_model_exclude_none=True, responses=EXTRACT_ERRORS, tags=["extract"])
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
        can_explain = bool(getattr(extractor, "supports_explain", False))
        args = (items, config, root, prefix, batch and body.explain, can_explain)
        if any(i.image_base64 is not None or i.image_path is not None for i in items):
            prepared = await run_in_threadpool(prepare_items, *args)  # decoding blocks
        else:
            prepared = prepare_items(*args)
        timeout = config.request_timeout
        if timeout is not None:
            timeout -= asyncio.get_running_loop().time() - started
        try:
            results = await predict_items(batcher, request, prepared, prefix, config, timeout)
        except ClientGone:  # nobody to answer; its queued items were dropped
            log.info("client went away; the %d items of its request still queued were dropped",
                     len(prepared))
            return JSONResponse(status_code=499, content={"detail": "client closed request"})
        out = result_models(items, results, prepared)
        if batch:
            return JSONResponse({"items": [o.as_json() for o in out]})
        return JSONResponse(out[0].as_json())

    from mjave.web import add_static_routes
    add_static_routes(app, pages={"/": "try.html"})

    return app
