"""Take the screenshots of docs/serving.md and docs/review.md with headless Chromium.

    python docs/screenshots.py docs/img \
        --model runs/experiments/synthetic-visualise/models/m-jave --catalog demo_output/catalog

`--model`/`--catalog`: a trained image model and the synthetic catalog it was trained on (`mjave
demo` / `mjave experiment visualise` write them); without them a tiny model is trained on the spot
(`mjave.testing.train_tiny_mjave`: pages that look right, predictions that do not). The review
page gets suggestions made by that model from the catalog's test texts (as `mjave complete`
would) and two invented conflicts. Needs the [dev] extra and /usr/bin/chromium; playwright never
downloads a browser. Writes try-page.png, review-page.png and review-conflicts.png
(256-colour PNGs, to keep the repository small).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = "/usr/bin/chromium"


def serve_in_thread(app):
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def save_small(png: bytes, path: Path) -> None:
    import io

    from PIL import Image
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def make_review_inputs(extractor, catalog: Path, work: Path, n: int = 12) -> dict[str, Path]:
    """Suggestions (the model's values on the first `n` test texts) and two conflicts."""
    records = [json.loads(line) for line in (catalog / "test.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("image")][:n]
    rows, conflicts = [], []
    for r in records:
        result = extractor.predict(r["text"], image=str(catalog / r["image"]))
        for v in result["values"]:
            rows.append([r.get("cid") or r["id"], v["attribute"], v["value"], v["value"].lower(),
                         round(v["score"], 4), v["begin"], v["end"], r["text"], r["id"]])
    seen, unique = set(), []
    for row in sorted(rows, key=lambda x: -x[4]):
        if (row[0], row[1], row[2]) not in seen:
            seen.add((row[0], row[1], row[2]))
            unique.append(row)
    for row in unique[:2]:
        conflicts.append([row[0], row[1], "navy" if row[2] != "navy" else "teal", row[2],
                          row[4], row[5], row[6], row[7], row[8]])
    head = ["product_id", "attribute", "value", "normalized_value", "score", "begin", "end",
            "evidence", "record_id"]
    suggestions = work / "suggestions.csv"
    with suggestions.open("w", newline="") as f:
        csv.writer(f).writerows([head, *unique])
    conflict_file = work / "conflicts.csv"
    with conflict_file.open("w", newline="") as f:
        csv.writer(f).writerows([["product_id", "attribute", "table_value", "text_value",
                                  *head[4:]], *conflicts])
    products = work / "products.jsonl"
    products.write_text("".join(json.dumps({k: r[k] for k in ("id", "cid", "category", "text",
                                                             "image") if k in r}) + "\n"
                                for r in records))
    return {"suggestions": suggestions, "conflicts": conflict_file, "products": products}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for the PNG files, e.g. docs/img")
    p.add_argument("--model", type=Path, help="a trained model folder (reads images)")
    p.add_argument("--catalog", type=Path, help="the catalog folder the model was trained on")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from mjave.inference.extractor import Extractor
    from mjave.cli.review import load_inputs
    from mjave.review.app import create_review_app
    from mjave.serving.app import ServeConfig, create_app

    work = Path(tempfile.mkdtemp(prefix="mjave-shots-"))
    if args.model is None:
        from mjave.testing import train_tiny_mjave
        args.model, args.catalog = train_tiny_mjave(work / "tiny", image_size=224, epochs=3)
        (args.catalog / "test.jsonl").write_text((args.catalog / "train.jsonl").read_text())
    elif args.catalog is None:
        p.error("--model needs --catalog (its test.jsonl and images)")
    extractor = Extractor.load(args.model, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    first = json.loads((args.catalog / "test.jsonl").read_text().splitlines()[0])
    ambiguous = next((json.loads(line) for line in
                      (args.catalog / "test.jsonl").read_text().splitlines()
                      if " with " in line), first)

    files = make_review_inputs(extractor, args.catalog, work)
    ns = argparse.Namespace(suggestions=str(files["suggestions"]),
                            conflicts=str(files["conflicts"]), products=str(files["products"]),
                            format=None, db=str(work / "review.sqlite"), lease_seconds=300.0)
    db = load_inputs(ns)
    assert db is not None

    serve = serve_in_thread(create_app(extractor, ServeConfig()))
    review = serve_in_thread(create_review_app(db, image_root=args.catalog, reviewer="alice"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu",
                                               "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(serve[2] + "/")
            page.wait_for_function("() => document.getElementById('model-info').textContent")
            page.fill("#text", ambiguous["text"])
            page.set_input_files("#image", str(args.catalog / ambiguous["image"]))
            page.wait_for_function("() => document.getElementById('image-name').textContent")
            page.click("#extract")
            page.wait_for_selector("#heatmap .heat-cell")
            page.wait_for_timeout(300)
            save_small(page.screenshot(full_page=True), args.out / "try-page.png")

            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(review[2] + "/")
            page.wait_for_selector("#card", state="visible")
            page.keyboard.press("a")
            page.wait_for_function("() => document.getElementById('progress').textContent"
                                   ".startsWith('1 of')")
            page.wait_for_timeout(400)
            save_small(page.screenshot(full_page=True), args.out / "review-page.png")
            page.click("#tab-conflict")
            page.wait_for_function("() => !document.getElementById('c-table-wrap').hidden")
            page.wait_for_timeout(400)
            save_small(page.screenshot(full_page=True), args.out / "review-conflicts.png")
            browser.close()
    finally:
        for server, thread, _ in (serve, review):
            server.should_exit = True
            thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
