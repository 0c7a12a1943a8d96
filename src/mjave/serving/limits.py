"""The request-body cap of mjave's HTTP apps, as ASGI middleware: `mjave serve` and `mjave
review` install the same `BodyLimitMiddleware`, so an oversized body is refused before any
JSON is parsed."""

from __future__ import annotations

from typing import Any, Optional

from fastapi.responses import JSONResponse


class BodyLimitMiddleware:
    """413 for bodies over `max_body_bytes`, by Content-Length up front or by counting chunked
    bodies as they arrive (the body is buffered once and replayed to the app)."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def too_large(self) -> JSONResponse:
        return JSONResponse(status_code=413, content={
            "detail": f"request body is larger than the limit of {self.max_body_bytes} bytes"})

    def refuse_by_header(self, scope: dict) -> Optional[JSONResponse]:
        """The answer to a Content-Length that is no number (400) or over the limit (413);
        None when the header is absent or fine."""
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return JSONResponse(status_code=400,
                                        content={"detail": "invalid Content-Length header"})
                if declared > self.max_body_bytes:
                    return self.too_large()
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refuse_by_header(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
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
                await self.too_large()(scope, receive, send)
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


__all__ = ["BodyLimitMiddleware"]
