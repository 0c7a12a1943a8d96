"""The browser pages of mjave: the try page of `mjave serve` and the review page of `mjave review`.

Plain HTML, CSS and JavaScript in `mjave/web/static/`, shipped inside the wheel (package data):
no build step, no CDN, nothing fetched from elsewhere, so the pages work offline. Pages are
served with a Content-Security-Policy that allows scripts, styles and images from the server
itself only (images also from `data:`/`blob:` URLs for uploads); the scripts render every text
with `textContent`, never as HTML, so the policy is a second line of defence, not the first.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Mapping

STATIC_FILES: dict[str, str] = {
    "try.html": "text/html; charset=utf-8",
    "review.html": "text/html; charset=utf-8",
    "mjave.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "try.js": "text/javascript; charset=utf-8",
    "review.js": "text/javascript; charset=utf-8",
}
"""Every file the server may send (an allow-list: `/static/{name}` serves nothing else)."""

FAVICON = "favicon.svg"
"""The pages' icon: linked from each page and answered at `/favicon.ico` too (browsers ask there
anyway, and a 404 in every console hides real errors). Kept out of `STATIC_FILES`, whose files
name no URL at all: an SVG must name its namespace, `http://www.w3.org/2000/svg`, which is an
identifier, never fetched."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cache-Control": "no-cache"}


def static_bytes(name: str) -> bytes:
    """The content of one static file (KeyError for a name outside `STATIC_FILES`)."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files(__name__).joinpath("static", name).read_bytes()


def _page(send: Any, name: str) -> Any:
    """A route handler with no parameters (FastAPI would turn parameters into query fields)."""
    def page() -> Any:
        return send(name)
    return page


def add_static_routes(app: Any, pages: Mapping[str, str]) -> None:
    """`GET /static/{name}` for the allow-listed files, `GET <path>` for each page
    (`{"/": "try.html"}`) and the icon (`/favicon.ico`, `/static/favicon.svg`), with the
    security headers. FastAPI is imported by the caller."""
    from fastapi import HTTPException
    from fastapi.responses import Response

    def send(name: str) -> Response:
        return Response(static_bytes(name), media_type=STATIC_FILES[name],
                        headers=SECURITY_HEADERS)

    for path, name in pages.items():
        if name not in STATIC_FILES:
            raise ValueError(f"not a static file: {name}")

        app.add_api_route(path, _page(send, name), methods=["GET"], include_in_schema=False,
                          name=f"page {name}")

    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return send(name)

    def favicon() -> Response:
        icon = resources.files(__name__).joinpath("static", FAVICON).read_bytes()
        return Response(icon, media_type="image/svg+xml", headers=SECURITY_HEADERS)

    for path in ("/favicon.ico", f"/static/{FAVICON}"):
        app.add_api_route(path, favicon, methods=["GET"], include_in_schema=False,
                          name=f"icon {path}")

    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)


__all__ = ["CSP", "FAVICON", "SECURITY_HEADERS", "STATIC_FILES", "add_static_routes",
           "static_bytes"]
