"""End to end in a real browser: Debian's Chromium (`/usr/bin/chromium`, headless) driven by the
Python `playwright` package, against `mjave serve` and `mjave review` started as commands on
loopback.

- try page: extract from a text and an image; the highlights, the gate bars and the 7x7 heat map
  appear; a text holding `<script>` and `<img onerror>` is shown literally and runs nothing;
- review page: three suggestions reviewed by keyboard (a, r, e), undo (u) and the arrows, the
  conflicts tab; the server restarted, the decisions still there; `mjave review export` writes
  them.

Playwright never downloads a browser here (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1, the system
Chromium by `executable_path`). Without Chromium or playwright the module is skipped with the
reason, unless MJAVE_REQUIRE_BROWSER=1 (as `.ci/run` sets), where that is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (it is in the [dev] extra)"
    for module in ("fastapi", "uvicorn", "httpx"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (the [serve] extra)"
    return None


_reason = _missing()
if _reason is not None:
    if os.environ.get("MJAVE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (MJAVE_REQUIRE_BROWSER=1): {_reason}",
                    pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
TEXT = "red shirt with blue shoes, slim fit"
HTTP = httpx.Client(trust_env=False, timeout=30)  # loopback: no proxy from the environment
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> red shirt'


# ---- servers and the browser ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A command (`python -m mjave.cli ...`) serving on a loopback port until stopped."""

    def __init__(self, args: list[str], log: Path, ready: str = "/healthz",
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONUNBUFFERED"] = "1"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mjave.cli", *args, "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning"],
            stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n"
                                   f"{log.read_text()}")
            try:
                if HTTP.get(self.url + ready, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    # every request the page makes (its icon included) must be answered: a 404 is a console error
    page.failed = []  # type: ignore[attr-defined]
    page.on("response", lambda r: r.status >= 400 and page.failed.append(  # type: ignore
        f"{r.status} {r.url}"))
    yield page
    context.close()


@pytest.fixture(scope="module")
def serve(tiny_web_model, tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    folder, data = tiny_web_model
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    server = Server(["serve", str(folder), "--device", "cpu"], log, ready="/readyz")
    try:
        yield server, data
    finally:
        server.stop()


def text_of(page, selector: str) -> str:
    return page.eval_on_selector(selector, "e => e.textContent")


# ---- the try page ----

def test_try_page_shows_highlights_gates_and_the_heat_map(page, serve, tmp_path):
    server, _ = serve
    page.goto(server.url + "/")
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.includes('image')")
    image = tmp_path / "red.png"
    Image.new("RGB", (224, 224), (220, 30, 30)).save(image)
    page.fill("#text", TEXT)
    page.set_input_files("#image", str(image))
    page.wait_for_function(
        "() => document.getElementById('image-name').textContent === 'red.png'")
    page.click("#extract")
    page.wait_for_selector("#rendered .tok")
    expected = HTTP.post(server.url + "/v1/extract",
                         json={"text": TEXT, "explain": True}).json()
    assert text_of(page, "#rendered") == TEXT  # the text reads as typed
    tokens = page.locator("#rendered .tok")
    assert tokens.count() == len(expected["explain"]["tokens"]) == 8
    shades = page.eval_on_selector_all("#rendered .tok .gate",
                                       "els => els.map(e => e.style.backgroundColor)")
    assert len(shades) == 8 and all("196, 61, 0" in s for s in shades)
    assert "global gate 0." in (tokens.first.get_attribute("title") or "")
    marks = page.locator("#rendered mark.val")
    assert marks.count() >= 1
    titles = [marks.nth(i).get_attribute("title") for i in range(marks.count())]
    assert all(t.split(" · ")[0] in ("Color", "Fit") and " · score 0." in t for t in titles)
    assert {marks.nth(i).evaluate("e => e.style.backgroundColor") for i in range(marks.count())}
    cells = page.locator("#heatmap .heat-cell")
    assert cells.count() == 49  # the 7x7 regional gate over the image
    assert page.eval_on_selector("#heatmap", "e => getComputedStyle(e).gridTemplateColumns"
                                 ).count("px") == 7
    assert page.eval_on_selector("#preview", "e => e.naturalWidth") == 224
    rows = page.locator("#attributes tr")
    assert rows.count() == 3  # header + Color + Fit, with their probabilities
    page.select_option("#map-kind", "image_attention")
    assert page.locator("#heatmap .heat-cell").count() == 49
    assert not page.errors
    assert not page.failed, page.failed


def test_try_page_renders_markup_as_text(page, serve):
    server, _ = serve
    page.goto(server.url + "/")
    page.wait_for_function("() => document.getElementById('model-info').textContent.length > 0")
    page.fill("#text", XSS)
    page.click("#extract")
    page.wait_for_function("t => document.getElementById('rendered').textContent === t", arg=XSS)
    page.wait_for_timeout(300)  # an <img src=x> would have failed to load by now
    assert page.evaluate("window.__xss") is None
    assert page.locator("#rendered script, #rendered img").count() == 0
    assert page.locator("#rendered mark.val").count() >= 1  # highlights inside the markup text
    assert not page.errors


def sent_extracts(page) -> list[dict]:
    """The bodies of the page's POST /v1/extract requests, recorded as they go out."""
    bodies: list[dict] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/v1/extract")
            and bodies.append(json.loads(r.post_data or "{}")))
    return bodies


def serve_model_info(page, server, **info) -> None:
    """Answer the page's GET /v1/model with the server's, `info` changed."""
    model = HTTP.get(server.url + "/v1/model").json()
    model["info"].update(info)
    page.route("**/v1/model", lambda route: route.fulfill(json=model))


def test_try_page_sends_a_typed_category_when_the_model_lists_none(page, serve):
    """A schema without categories: a text input, its value sent as `category` (the server
    accepts it; an unknown category restricts nothing)."""
    server, _ = serve
    serve_model_info(page, server, categories=[])
    bodies = sent_extracts(page)
    page.goto(server.url + "/")
    page.wait_for_function("() => document.getElementById('category-hint').textContent !== ''")
    assert page.is_visible("#category-text") and page.is_hidden("#category")
    page.fill("#text", TEXT)
    page.fill("#category-text", "  shirts ")
    page.click("#extract")
    page.wait_for_selector("#rendered mark.val")
    assert bodies and bodies[-1]["category"] == "shirts"
    page.fill("#category-text", "")
    page.click("#extract")
    page.wait_for_function("() => !document.getElementById('extract').disabled")
    assert len(bodies) == 2 and "category" not in bodies[-1]
    assert not page.errors and not page.failed, (page.errors, page.failed)


def test_try_page_offers_the_schema_categories_in_a_select(page, serve):
    """A model whose schema has categories (GET /v1/model `info.categories`): a select of them,
    the chosen one sent with the request."""
    server, _ = serve
    serve_model_info(page, server, categories=["hats", "shirts"], restrict_to_category=True)
    bodies = sent_extracts(page)
    page.goto(server.url + "/")
    page.wait_for_function("() => !document.getElementById('category').hidden")
    assert page.is_hidden("#category-text")
    options = page.eval_on_selector_all("#category option", "os => os.map(o => o.value)")
    assert options == ["", "hats", "shirts"]
    assert "seen with this category" in text_of(page, "#category-hint")
    page.fill("#text", TEXT)
    page.select_option("#category", "shirts")
    page.click("#extract")
    page.wait_for_selector("#rendered mark.val")
    assert bodies[-1]["category"] == "shirts"
    assert not page.errors


def test_api_docs_render_without_the_internet(page, serve):
    """Swagger UI at /docs shows the operations with every request answered by the server
    itself (any other host is refused and recorded)."""
    server, _ = serve
    outside: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server.url + "/docs")
    page.wait_for_selector('.opblock-summary-path:has-text("/v1/extract")')
    assert page.locator(".opblock").count() >= 4   # extract, model, healthz, readyz
    assert not outside and not page.errors, (outside, page.errors)


# ---- the review page ----

PRODUCTS = [
    {"id": "p1", "text": "Red organic cotton shirt, slim fit", "category": "shirts",
     "image": "p1.png"},
    {"id": "p2", "text": "Blue denim jeans with a regular fit", "category": "jeans"},
    {"id": "p3", "text": XSS + " green hat", "category": "hats"},
]


def review_inputs(folder: Path) -> dict[str, Path]:
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (120, 120), (220, 30, 30)).save(folder / "images" / "p1.png")
    products = folder / "products.jsonl"
    products.write_text("".join(json.dumps(p) + "\n" for p in PRODUCTS), encoding="utf-8")
    texts = {p["id"]: p["text"] for p in PRODUCTS}

    def row(pid, attr, value, score):
        b = texts[pid].index(value)
        return [pid, attr, value, value.lower(), score, b, b + len(value), texts[pid]]

    suggestions = folder / "suggestions.csv"
    with suggestions.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "attribute", "value", "normalized_value", "score", "begin",
                    "end", "evidence"])
        w.writerows([row("p3", "Color", "green", 0.97), row("p1", "Color", "Red", 0.9),
                     row("p1", "Material", "cotton", 0.8), row("p2", "Fit", "regular", 0.7)])
    conflicts = folder / "conflicts.csv"
    with conflicts.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "attribute", "table_value", "text_value", "score", "begin",
                    "end", "evidence"])
        w.writerow(["p2", "Color", "navy", "Blue", 0.85, 0, 4, "Blue denim jeans"])
    return {"products": products, "suggestions": suggestions, "conflicts": conflicts,
            "images": folder / "images", "db": folder / "review.sqlite"}


def wait_value(page, value: str) -> None:
    page.wait_for_function("v => document.getElementById('c-value').textContent === v",
                           arg=value)


def test_review_by_keyboard_survives_a_restart_and_exports(page, tmp_path):
    files = review_inputs(tmp_path)
    args = ["review", str(files["suggestions"]), "--products", str(files["products"]),
            "--conflicts", str(files["conflicts"]), "--db", str(files["db"]), "--image-root",
            str(files["images"]), "--reviewer", "alice"]
    log = tmp_path / "review.log"
    server = Server(args, log)
    try:
        page.goto(server.url + "/")
        wait_value(page, "green")  # the best-scored suggestion first
        # the product text with markup in it is text, and nothing ran
        page.wait_for_timeout(300)
        assert text_of(page, "#c-text") == PRODUCTS[2]["text"]
        assert page.evaluate("window.__xss") is None
        assert page.locator("#c-text script, #c-text img").count() == 0
        assert text_of(page, "#c-text mark") == "green"
        assert page.input_value("#reviewer") == "alice"

        page.keyboard.press("a")                       # accept "green"
        wait_value(page, "Red")
        page.wait_for_function("() => document.getElementById('c-image').naturalWidth === 120")
        assert text_of(page, "#c-text mark") == "Red"
        page.keyboard.press("r")                       # reject "Red"
        wait_value(page, "cotton")
        page.keyboard.press("e")                       # edit "cotton"
        assert page.evaluate("document.activeElement.id") == "edit-value"
        page.keyboard.press("Control+a")
        page.keyboard.type("organic cotton")
        page.keyboard.press("Enter")
        wait_value(page, "regular")
        page.wait_for_function("() => document.getElementById('progress').textContent"
                               ".startsWith('3 of 4 decided')")

        page.keyboard.press("u")                       # undo the edit: back on "cotton"
        wait_value(page, "cotton")
        assert "Undecided" in text_of(page, "#c-decision")
        page.keyboard.press("e")
        page.keyboard.press("Control+a")
        page.keyboard.type("organic cotton")
        page.keyboard.press("Enter")
        wait_value(page, "regular")
        page.keyboard.press("ArrowLeft")               # look back at the edit
        wait_value(page, "cotton")
        assert "edited to “organic cotton” by alice" in text_of(page, "#c-decision")
        page.keyboard.press("ArrowRight")
        wait_value(page, "regular")

        page.click("#tab-conflict")                    # conflicts: keep the text's value
        wait_value(page, "Blue")
        assert text_of(page, "#c-table") == "navy"
        page.keyboard.press("x")
        page.wait_for_selector("#empty", state="visible")
        assert not page.errors
        assert not page.failed, page.failed
    finally:
        server.stop()

    server = Server(args, log, port=server.port)  # a restart: same command, same database
    try:
        page.reload()
        page.wait_for_function("() => document.getElementById('progress').textContent"
                               ".startsWith('3 of 4 decided')")
        wait_value(page, "regular")
        meta = HTTP.get(server.url + "/api/meta").json()["kinds"]
        assert meta["suggestion"]["counts"] == {"total": 4, "accept": 1, "reject": 1, "edit": 1,
                                                "decided": 3, "undecided": 1}
        assert meta["conflict"]["counts"]["keep_text"] == 1
    finally:
        server.stop()

    accepted, labeled = tmp_path / "accepted.csv", tmp_path / "next.jsonl"
    done = subprocess.run([sys.executable, "-m", "mjave.review", "export", "--db",
                           str(files["db"]), "-o", str(accepted), "--labeled", str(labeled)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert accepted.read_text() == ("product_id,attribute,value\np1,Material,organic cotton\n"
                                    "p2,Color,Blue\np3,Color,green\n")
    records = [json.loads(line) for line in labeled.read_text().splitlines()]
    spans = {r["id"]: [(s["attr"], s["value"]) for s in r["spans"]] for r in records}
    assert spans == {"p1": [("Material", "organic cotton")], "p2": [("Color", "Blue")],
                     "p3": [("Color", "green")]}


def test_try_page_lists_values_named_without_a_span_apart(page, serve):
    """A value with null offsets (`model.implicit_values`) is shown under "Not in the text",
    with its source and score, and highlights nothing in the text."""
    server, _ = serve
    text = "a shirt, slim fit"
    result = {"attributes": [{"name": "Fit", "score": 0.9}], "values": [
        {"attribute": "Fit", "value": "slim fit", "begin": 9, "end": 17, "score": 0.8},
        {"attribute": "Color", "value": "red", "begin": None, "end": None, "score": 0.93,
         "source": "image"}]}
    page.route("**/v1/extract", lambda route: route.fulfill(json=result))
    page.goto(server.url + "/")
    page.wait_for_function("() => document.getElementById('model-info').textContent.length > 0")
    page.fill("#text", text)
    page.click("#extract")
    page.wait_for_function("() => !document.getElementById('implicit').hidden")
    items = page.locator("#implicit-values li")
    assert items.count() == 1
    assert "red" in items.inner_text() and "from the image" in items.inner_text()
    assert "0.93" in items.inner_text()
    marks = page.locator("#rendered mark.val")
    assert marks.count() == 1 and marks.first.get_attribute("data-attribute") == "Fit"
    assert page.locator("#rendered").text_content() == text
    assert not page.errors
