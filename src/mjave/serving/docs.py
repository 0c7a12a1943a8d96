"""The FastAPI app with its API docs pages (`/docs`, `/redoc`) served with nothing from a CDN,
for `mjave serve` and `mjave review`.

fastapi-offline bundles Swagger UI and ReDoc, but its ReDoc bundle still draws the Redocly logo
of the menu's footer from cdn.redoc.ly: behind a firewall that is a failed request on every
visit, elsewhere a request to a third party. `/redoc` here loads a copy of the bundle whose
logo is the app's own icon (`/static/favicon.svg`, served by `mjave.web.add_static_routes`).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response
from fastapi_offline import FastAPIOffline

REDOC_JS_URL = "/docs-static/redoc.standalone.js"
OFFLINE_FAVICON_URL = "/static-offline-docs/favicon.png"
"""fastapi-offline's icon of the docs pages (its static files are mounted there)."""

REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
LOCAL_LOGO = b"static/favicon.svg"
"""Relative to the page (`/redoc`), so it also holds behind a proxy's root path."""


@functools.lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    """fastapi-offline's ReDoc bundle with its one CDN address, the logo, made local (read and
    patched once: the bundle is about 1 MB)."""
    bundle = resources.files("fastapi_offline").joinpath("static", "redoc.standalone.js")
    return bundle.read_bytes().replace(REDOC_CDN_LOGO, LOCAL_LOGO)


def offline_docs_app(**kwargs: Any) -> FastAPI:
    """`FastAPI(**kwargs)` with `/docs` (fastapi-offline's) and `/redoc` (ours, see the module
    docstring), neither loading anything from another server."""
    app = FastAPIOffline(redoc_url=None, **kwargs)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}",
                              title=f"{app.title} - ReDoc", redoc_js_url=f"{root}{REDOC_JS_URL}",
                              redoc_favicon_url=f"{root}{OFFLINE_FAVICON_URL}",
                              with_google_fonts=False)

    @app.get(REDOC_JS_URL, include_in_schema=False)
    def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=86400"})

    return app


__all__ = ["offline_docs_app", "redoc_bundle"]
