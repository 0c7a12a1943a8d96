"""The error answers of mjave's HTTP apps (`mjave serve` and `mjave review` install the same
handlers with `add_error_handlers`): a client's input is answered 4xx, never 5xx.

FastAPI's own 422 handler echoes each bad value back (`"input": ...`). A body may hold values
that cannot be written back as JSON (NaN, a lone surrogate `\\ud800`, a list nested thousands
deep) or that are huge, so echoing turned a 422 into a 500 with a traceback and a reset
connection. These handlers never echo a value: an answer is `{"detail": "one line"}` (422s also
list `errors` with each field's location, message and type), and every string in it is made
encodable and cut to a bounded length.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_TEXT = 300
"""Characters kept of any string of an answer that may come from the client (a key, a message)."""

MAX_DETAIL = 2000
"""Characters kept of an answer's `detail`."""

MAX_LISTED = 5
"""Field errors named in a 422's `detail` (all of them, up to `MAX_ERRORS`, are in `errors`)."""

MAX_ERRORS = 50
"""Field errors listed in a 422's `errors`: a body of 10,000 bad items is one answer, not 10,000."""

UNION_TAGS = ("single", "batch")
"""Tags of `mjave.serving.schemas.request_type`'s union, left out of error locations."""


class ErrorOut(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[Union[str, int]]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: str = Field(description="all problems in one line")
    errors: list[FieldError]


def safe_text(text: Any, limit: int = MAX_TEXT) -> str:
    """`text` fit for a JSON answer: a lone surrogate (valid in a JSON string, in no encoding)
    escaped as `\\udXXX`, and at most `limit` characters (the cut marked with '...')."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_location(loc: Sequence[Any]) -> list[Union[str, int]]:
    """A pydantic error location without FastAPI's 'body' and the union tags; keys (they come
    from the client: `{"\\ud800": 1}`) made safe."""
    out = list(loc)
    if out and out[0] == "body":
        out = out[1:]
    return [p if isinstance(p, int) and not isinstance(p, bool) else safe_text(p)
            for p in out if p not in UNION_TAGS]


def location_text(loc: Sequence[Union[str, int]]) -> str:
    """`items[0].text` for ["items", 0, "text"]; "body" for the whole body."""
    text = ""
    for p in loc:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "body"


def field_error(e: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as {"loc", "msg", "type"}: its `input` and `ctx` are left out (they
    are the client's values), except a JSON syntax error's position."""
    msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
    loc = error_location(e.get("loc", ()))
    if e.get("type") == "json_invalid":  # loc is ("body", character offset)
        ctx = e.get("ctx") if isinstance(e.get("ctx"), dict) else {}
        msg = f"JSON decode error at character {loc[0] if loc else '?'}: " \
              f"{ctx.get('error', 'invalid JSON')}"
        loc = []
    return {"loc": loc, "msg": safe_text(msg), "type": safe_text(e.get("type", "invalid"))}


def too_many_items(errors: Sequence[dict[str, Any]], max_items: Optional[int]) -> Optional[str]:
    """The 413 message when the error is a batch over `max_items` items (None: not that)."""
    if max_items is None:
        return None
    for e in errors:
        if e.get("type") == "too_long" and error_location(e.get("loc", ())) == ["items"]:
            ctx = e.get("ctx") if isinstance(e.get("ctx"), dict) else {}
            n = ctx.get("actual_length")
            return (f"{n if isinstance(n, int) else 'too many'} items in one request; the "
                    f"limit is {max_items}")
    return None


def validation_answer(exc: RequestValidationError, max_items: Optional[int] = None
                      ) -> JSONResponse:
    """The 422 for a body that does not fit the schema (413 for a batch over `max_items`)."""
    raw = list(exc.errors())
    over = too_many_items(raw, max_items)
    if over is not None:
        return JSONResponse(status_code=413, content={"detail": over})
    errors = [field_error(e) for e in raw[:MAX_ERRORS]]
    shown = "; ".join(f"{location_text(e['loc'])}: {e['msg']}" for e in errors[:MAX_LISTED])
    more = f" (and {len(raw) - MAX_LISTED} more)" if len(raw) > MAX_LISTED else ""
    return JSONResponse(status_code=422, content={
        "detail": safe_text(f"invalid request: {shown}{more}", MAX_DETAIL), "errors": errors})


def http_error_answer(exc: StarletteHTTPException) -> Response:
    """An HTTPException as `{"detail": ...}`; a detail quoting the client (an image path, a
    name) is made encodable and bounded like everything else."""
    headers = getattr(exc, "headers", None)
    if exc.status_code in (204, 304):  # no body allowed (as Starlette's own handler)
        return Response(status_code=exc.status_code, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(status_code=exc.status_code, content={
        "detail": safe_text(detail, MAX_DETAIL)}, headers=headers)


def add_error_handlers(app: FastAPI, max_items: Optional[int] = None) -> None:
    """Answer a body that does not fit the schema 422 (413 for a batch over `max_items` items)
    and an HTTPException with its status, both without echoing the client's values."""

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_answer(exc, max_items)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return http_error_answer(exc)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


__all__ = ["ErrorOut", "FieldError", "MAX_DETAIL", "MAX_TEXT", "ValidationErrorOut",
           "add_error_handlers", "error_location", "field_error", "location_text", "safe_text",
           "validation_answer"]
