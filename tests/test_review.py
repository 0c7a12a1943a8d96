"""`mjave review`: the decision database (WAL, history, idempotence, undo, leases under concurrent
threads and HTTP clients), the CSV checks with line numbers, the HTTP API (images only from the
image root, bounded bodies, texts returned as JSON for the page to render as text), and
`mjave review export` (catalog CSV and labelled JSONL). The browser side is tests/test_browser.py.

The suggestions/conflicts files are written here with the columns of `mjave complete`
(docs/completion.md), so these tests need nothing from the completion code.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from mjave.data.formats import read_records
from mjave.review.db import Filters, Leased, NothingToUndo, ReviewDB, ReviewError
from mjave.review.export import export
from mjave.review.inputs import read_items, read_products

SUGGESTION_HEADER = ["product_id", "attribute", "value", "normalized_value", "score", "begin",
                     "end", "evidence"]
CONFLICT_HEADER = ["product_id", "attribute", "table_value", "text_value", "score", "begin",
                   "end", "evidence"]

PRODUCTS = [
    {"id": "p1", "text": "Red cotton shirt, slim fit, red buttons", "category": "shirts",
     "image": "p1.png"},
    {"id": "p2", "text": "Blue denim jeans with a regular fit (<b>new</b>)", "category": "jeans",
     "image": "p2.png"},
    {"id": "p3", "text": "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\"> "
                         "green hat", "category": "hats", "image": "../secret.png"},
    {"id": "p4", "text": "Black leather boots", "category": "shoes", "image": "link.png"},
]
TEXTS = {p["id"]: p["text"] for p in PRODUCTS}


def suggestion(pid: str, attr: str, value: str, score: float, offsets: bool = True) -> list:
    """A row of suggestions.csv; the offsets are where the text has the value (or left empty)."""
    b = TEXTS[pid].index(value)
    return [pid, attr, value, value.lower(), score, b if offsets else "",
            b + len(value) if offsets else "", TEXTS[pid][max(0, b - 10):b + len(value) + 10]]


SUGGESTIONS = [
    suggestion("p1", "Color", "Red", 0.95),
    suggestion("p1", "Material", "cotton", 0.90),
    suggestion("p2", "Fit", "regular", 0.80),
    suggestion("p3", "Color", "green", 0.70, offsets=False),
    suggestion("p4", "Material", "leather", 0.60),
]
SUGGESTIONS[3][5:7] = [3, 8]  # offsets that do not hold the value: it is searched for instead
CONFLICTS = [
    ["p2", "Color", "navy", "Blue", 0.85, 0, 4, "Blue denim jeans"],
    ["p4", "Color", "brown", "Black", 0.75, 0, 5, "Black leather boots"],
]


def write_csv(path: Path, header: list, rows: list) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def png(size=(32, 32), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Products (JSONL), suggestions, conflicts, an image root with a good image, a symlink
    out of the root and a secret file outside it."""
    root = tmp_path / "images"
    root.mkdir()
    (root / "p1.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png(colour=(0, 0, 0)))
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "p2.png").write_bytes(b"not an image at all")
    products = tmp_path / "products.jsonl"
    products.write_text("".join(json.dumps(p) + "\n" for p in PRODUCTS), encoding="utf-8")
    return {"products": products, "root": root,
            "suggestions": write_csv(tmp_path / "suggestions.csv", SUGGESTION_HEADER, SUGGESTIONS),
            "conflicts": write_csv(tmp_path / "conflicts.csv", CONFLICT_HEADER, CONFLICTS),
            "db": tmp_path / "review.sqlite"}


def load(inputs: dict[str, Path], **kwargs) -> ReviewDB:
    items, errors = read_items(inputs["suggestions"], "suggestion")
    conflicts, errors2 = read_items(inputs["conflicts"], "conflict")
    assert not errors and not errors2
    items += conflicts
    products = read_products(inputs["products"], {i.product_id for i in items})
    db = ReviewDB(inputs["db"], **kwargs)
    db.load(items, products)
    return db


def item_id(db: ReviewDB, kind: str, value: str) -> int:
    with sqlite3.connect(db.path) as c:
        return c.execute("SELECT id FROM items WHERE kind=? AND value=?", (kind, value)
                         ).fetchone()[0]


# ---- the database ----

def test_database_is_in_wal_mode(inputs):
    db = load(inputs)
    assert db.journal_mode() == "wal"
    with sqlite3.connect(inputs["db"]) as c:  # persistent: a fresh connection sees it too
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 7


def test_items_know_their_text_highlight_and_category(inputs):
    db = load(inputs)
    item = db.item(item_id(db, "suggestion", "cotton"))
    assert item["text"] == PRODUCTS[0]["text"] and item["category"] == "shirts"
    assert item["text"][item["hl_begin"]:item["hl_end"]] == "cotton"
    # wrong offsets in the file: the value is found in the text instead
    green = db.item(item_id(db, "suggestion", "green"))
    assert green["text"][green["hl_begin"]:green["hl_end"]] == "green"
    conflict = db.item(item_id(db, "conflict", "Blue"))
    assert conflict["table_value"] == "navy" and conflict["hl_begin"] == 0


def test_reloading_is_idempotent_and_keeps_decisions(inputs):
    db = load(inputs)
    red = item_id(db, "suggestion", "Red")
    db.decide(red, "accept", "alice")
    rows = [list(r) for r in SUGGESTIONS]
    rows[0][4] = 0.5  # a new score for the same suggestion
    write_csv(inputs["suggestions"], SUGGESTION_HEADER, rows)
    items, _ = read_items(inputs["suggestions"], "suggestion")
    summary = ReviewDB(inputs["db"]).load(
        items, read_products(inputs["products"], {i.product_id for i in items}))
    assert (summary.new, summary.updated) == (0, 5)
    again = ReviewDB(inputs["db"]).item(red)  # a new object on the same file: a restart
    assert again["score"] == 0.5 and again["decision"]["action"] == "accept"


def test_deciding_twice_keeps_the_last_decision_and_the_history(inputs):
    db = load(inputs)
    red = item_id(db, "suggestion", "Red")
    db.decide(red, "accept", "alice")
    db.decide(red, "edit", "bob", edited_value="  dark red ")
    item = db.item(red)
    assert item["decision"]["action"] == "edit" and item["decision"]["edited_value"] == "dark red"
    assert item["decision"]["reviewer"] == "bob"
    assert [h["action"] for h in item["history"]] == ["accept", "edit"]
    assert all(h["time"].endswith("+00:00") for h in item["history"])
    with sqlite3.connect(inputs["db"]) as c:
        rows = c.execute("SELECT action, reviewer FROM last_decisions WHERE item_id=?",
                         (red,)).fetchall()
        cols = [r[1] for r in c.execute("PRAGMA table_info(decisions)")]
    assert rows == [("edit", "bob")]
    assert {"product_id", "attribute", "value", "action", "edited_value", "reviewer",
            "time"} <= set(cols)


def test_a_retried_request_is_recorded_once(inputs):
    db = load(inputs)
    red = item_id(db, "suggestion", "Red")
    first = db.decide(red, "accept", "alice", request_id="req-00000001")
    second = db.decide(red, "accept", "alice", request_id="req-00000001")
    assert first["id"] == second["id"] and len(db.history()) == 1


def test_undo_goes_back_one_decision_at_a_time(inputs):
    db = load(inputs)
    red = item_id(db, "suggestion", "Red")
    db.decide(red, "accept", "alice")
    db.decide(red, "edit", "alice", edited_value="crimson")
    assert db.undo("alice", item_id=red)["decision"]["action"] == "accept"
    assert db.undo("alice", item_id=red)["decision"] is None
    with pytest.raises(NothingToUndo):
        db.undo("alice", item_id=red)
    actions = [h["action"] for h in db.item(red)["history"]]
    assert actions == ["accept", "edit", "undo", "undo"]


def test_undo_without_an_item_takes_back_the_reviewers_last_decision(inputs):
    db = load(inputs)
    red, cotton = item_id(db, "suggestion", "Red"), item_id(db, "suggestion", "cotton")
    db.decide(red, "accept", "alice")
    db.decide(cotton, "reject", "bob")
    item = db.undo("alice", session="alice-session")
    assert item["id"] == red and item["decision"] is None
    assert item["lease"]["session"] == "alice-session"  # back on the reviewer's screen
    assert db.item(cotton)["decision"]["action"] == "reject"
    with pytest.raises(NothingToUndo):
        db.undo("alice")


def test_actions_are_checked_per_kind(inputs):
    db = load(inputs)
    with pytest.raises(ReviewError, match="takes keep_table"):
        db.decide(item_id(db, "conflict", "Blue"), "accept", "alice")
    with pytest.raises(ReviewError, match="edited_value"):
        db.decide(item_id(db, "suggestion", "Red"), "edit", "alice", edited_value="  ")


def test_the_queue_is_sorted_by_score_and_skips_wrap_around(inputs):
    db = load(inputs)
    first = db.claim("s-1", "alice")
    assert first["value"] == "Red"
    second = db.claim("s-1", "alice", after=first["id"])
    assert second["value"] == "cotton"
    order = [first["value"], second["value"]]
    current = second
    for _ in range(3):
        current = db.claim("s-1", "alice", after=current["id"])
        order.append(current["value"])
    assert order == ["Red", "cotton", "regular", "green", "leather"]
    assert db.claim("s-1", "alice", after=current["id"])["value"] == "Red"  # wraps
    assert db.claim("s-1", "alice", kind="conflict")["value"] == "Blue"


def test_filters(inputs):
    db = load(inputs)
    assert db.claim("s", "a", filters=Filters(attribute="Material"))["value"] == "cotton"
    assert db.claim("s", "a", filters=Filters(category="hats"))["value"] == "green"
    assert db.claim("s", "a", filters=Filters(max_score=0.75))["value"] == "green"
    assert db.claim("s", "a", filters=Filters(min_score=0.99)) is None
    counts = db.counts("suggestion", Filters(attribute="Color"))
    assert counts == {"total": 2, "decided": 0, "undecided": 2}
    assert db.facets("suggestion")["categories"] == ["hats", "jeans", "shirts", "shoes"]


def test_decided_items_leave_the_queue(inputs):
    db = load(inputs)
    seen = []
    while (item := db.claim("s", "alice")) is not None:
        seen.append(item["value"])
        db.decide(item["id"], "accept", "alice", session="s")
    assert seen == ["Red", "cotton", "regular", "green", "leather"]
    assert db.counts("suggestion") == {"total": 5, "accept": 5, "decided": 5, "undecided": 0}


def test_a_leased_item_is_nobody_elses_until_it_expires(inputs):
    now = [1000.0]
    db = load(inputs, lease_seconds=60, clock=lambda: now[0])
    a = db.claim("session-a", "alice")
    b = db.claim("session-b", "bob")
    assert a["id"] != b["id"]
    with pytest.raises(Leased, match="alice"):
        db.decide(a["id"], "accept", "bob", session="session-b")
    with pytest.raises(Leased):
        db.open(a["id"], "session-b", "bob")
    now[0] += 61  # alice went to lunch
    assert db.open(a["id"], "session-b", "bob")["id"] == a["id"]
    db.decide(a["id"], "reject", "bob", session="session-b")
    assert db.renew("session-a") == 0


def test_concurrent_reviewers_never_get_the_same_item(inputs):
    load(inputs)
    n = 5
    barrier = threading.Barrier(n)
    claimed: list[int | None] = [None] * n
    decided: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def reviewer(k: int) -> None:
        try:
            db = ReviewDB(inputs["db"])  # each thread its own object, as separate servers
            barrier.wait()
            item = db.claim(f"session-{k}", f"r{k}")
            claimed[k] = item["id"] if item else None
            barrier.wait()  # everybody holds a lease now
            while item is not None:
                db.decide(item["id"], "accept", f"r{k}", session=f"session-{k}")
                decided[k].append(item["id"])
                item = db.claim(f"session-{k}", f"r{k}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(claimed) == sorted(set(claimed)) and None not in claimed
    flat = [i for d in decided for i in d]
    assert len(flat) == len(set(flat)) == 5  # every suggestion decided exactly once
    assert len(ReviewDB(inputs["db"]).history()) == 5


# ---- the input files ----

def test_malformed_rows_are_all_reported_with_their_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "product_id,attribute,value,normalized_value,score,begin,end,evidence\n"
        "p1,Color,red,red,0.9,0,3,red shirt\n"            # 2: fine
        "p1,Size,XL,xl,high,,,\n"                         # 3: score not a number
        ",Color,red,red,0.5,,,\n"                         # 4: empty product
        "p2,Color,blue,blue,0.5,4,,x\n"                   # 5: begin without end
        "p2,Fit,slim,slim,0.5\n"                          # 6: too few fields
        "p3,Color,\"multi\nline\",x,0.4,,,\n"             # 7-8: a quoted line break, fine
        "p3,Color,nan,nan,nan,,,\n"                       # 9: not finite
        "p1,Color,red,red,0.3,,,\n"                       # 10: duplicate of line 2
        "p4,Color,tan,tan,0.5,5,2,\n",                    # 11: end before begin
        encoding="utf-8")
    items, errors = read_items(path, "suggestion")
    assert [i.line for i in items] == [2, 7]
    where = [(e.line, e.field) for e in errors]
    assert where == [(3, "score"), (4, "product_id"), (5, "end"), (6, None), (9, "score"),
                     (10, None), (11, "end")]
    assert all(str(e).startswith(f"{path}:{e.line}: ") for e in errors)
    assert "line 2" in str(errors[5])


def test_a_missing_column_is_fatal(tmp_path):
    from mjave.data.errors import DataError
    path = write_csv(tmp_path / "c.csv", ["product_id", "attribute", "text_value", "score"], [])
    with pytest.raises(DataError, match=r"c.csv:1: .*table_value"):
        read_items(path, "conflict")


def test_cli_reports_bad_rows_before_serving(inputs, tmp_path, capsys):
    from mjave.cli import main
    rows = [list(r) for r in SUGGESTIONS] + [["p9", "Color", "red", "red", 0.5, "", "", ""],
                                              ["p1", "Size", "M", "m", "?", "", "", ""]]
    bad = write_csv(tmp_path / "bad.csv", SUGGESTION_HEADER, rows)
    code = main(["review", str(bad), "--products", str(inputs["products"]), "--db",
                 str(inputs["db"])])
    err = capsys.readouterr().err
    assert code == 1 and f"{bad}:8: field 'score'" in err
    assert not inputs["db"].exists()  # nothing loaded, nothing served
    del rows[-1]
    write_csv(bad, SUGGESTION_HEADER, rows)
    code = main(["review", str(bad), "--products", str(inputs["products"]), "--db",
                 str(inputs["db"])])
    err = capsys.readouterr().err
    assert code == 1 and f"{bad}:7: field 'product_id': product 'p9'" in err
    assert not inputs["db"].exists()


def test_cli_load_only_then_export(inputs, tmp_path, capsys):
    from mjave.cli import main
    args = ["review", str(inputs["suggestions"]), "--products", str(inputs["products"]),
            "--conflicts", str(inputs["conflicts"]), "--db", str(inputs["db"])]
    assert main(args + ["--load-only"]) == 0
    assert "7 new and 0 known items" in capsys.readouterr().out
    assert main(args + ["--load-only"]) == 0
    assert "0 new and 7 known items" in capsys.readouterr().out
    db = ReviewDB(inputs["db"])
    db.decide(item_id(db, "suggestion", "Red"), "accept", "alice")
    out = tmp_path / "accepted.csv"
    assert main(["review", "export", "--db", str(inputs["db"]), "-o", str(out)]) == 0
    assert out.read_text() == "product_id,attribute,value\np1,Color,Red\n"
    assert main(["review", "export", "--db", str(inputs["db"])]) == 2
    assert main(["review", "export", "--db", str(tmp_path / "none.sqlite"), "-o",
                 str(out)]) == 1


# ---- export ----

def test_export_catalog_and_labelled_training_data(inputs, tmp_path):
    db = load(inputs)
    ids = {v: item_id(db, "suggestion", v) for v in ("Red", "cotton", "regular", "green",
                                                      "leather")}
    db.decide(ids["Red"], "accept", "alice")            # two mentions: "Red" and "red"
    db.decide(ids["cotton"], "edit", "alice", edited_value="organic cotton")  # not in text
    db.decide(ids["regular"], "edit", "alice", edited_value="regular fit")    # in the text
    db.decide(ids["green"], "reject", "alice")
    db.decide(ids["leather"], "accept", "alice")
    db.decide(ids["leather"], "reject", "bob")          # the last decision counts
    db.decide(item_id(db, "conflict", "Blue"), "keep_text", "alice")
    db.decide(item_id(db, "conflict", "Black"), "keep_table", "alice")
    out, labeled = tmp_path / "accepted.csv", tmp_path / "next.jsonl"
    summary = export(db, out, labeled)
    assert list(csv.reader(out.open())) == [
        ["product_id", "attribute", "value"], ["p1", "Color", "Red"],
        ["p1", "Material", "organic cotton"], ["p2", "Color", "Blue"],
        ["p2", "Fit", "regular fit"]]
    assert summary.decided == 7 and summary.rows == 4 and summary.unmatched == 1
    assert summary.lines() == [  # as docs/review.md shows it
        "7 decided items (1 accept, 2 edit, 1 keep_table, 1 keep_text, 2 reject); 4 catalog rows",
        "2 labelled texts, 4 spans, 1 values not found in their text, 0 overlapping spans "
        "dropped"]
    records, issues = read_records(labeled)  # valid training data (strict read)
    by_id = {r.id: r for r in records}
    assert set(by_id) == {"p1", "p2"}
    p1, p2 = by_id["p1"], by_id["p2"]
    assert [(s.attr, s.value, s.begin) for s in p1.spans] == [("Color", "Red", 0),
                                                              ("Color", "red", 28)]
    assert p1.extra["unmatched"] == [{"attribute": "Material", "value": "organic cotton"}]
    assert p1.extra["known_attributes"] == ["Color", "Material"]
    assert [(s.attr, s.value) for s in p2.spans] == [("Color", "Blue"), ("Fit", "regular fit")]
    assert p2.extra["known_attributes"] == ["Color", "Fit"] and "unmatched" not in p2.extra
    assert p1.category == "shirts" and p1.image == "p1.png"


def test_export_labels_edited_values_found_after_normalisation(inputs, tmp_path):
    db = load(inputs)
    db.decide(item_id(db, "suggestion", "regular"), "edit", "a", edited_value="DENIM")
    export(db, None, tmp_path / "l.jsonl")
    (record,), _ = read_records(tmp_path / "l.jsonl")
    assert [(s.attr, s.value) for s in record.spans] == [("Fit", "denim")]


# ---- the HTTP API ----

SESSION = {"session": "session-alice", "reviewer": "alice"}


def create_review_app(*args, **kwargs):
    """The review app (skips without the [serve] extra: the database tests above need none)."""
    pytest.importorskip("fastapi")
    from mjave.review.app import create_review_app
    return create_review_app(*args, **kwargs)


def TestClient(app):  # noqa: N802 - stands for fastapi's class
    from fastapi.testclient import TestClient
    return TestClient(app)


@pytest.fixture
def client(inputs):
    db = load(inputs)
    with TestClient(create_review_app(db, image_root=inputs["root"], reviewer="alice")) as c:
        yield c


def test_api_review_round_trip(client):
    meta = client.get("/api/meta").json()
    assert meta["reviewer"] == "alice" and meta["kinds"]["suggestion"]["counts"]["total"] == 5
    assert meta["kinds"]["conflict"]["attributes"] == ["Color"]
    r = client.post("/api/claim", json={**SESSION, "kind": "suggestion"}).json()
    item = r["item"]
    assert item["value"] == "Red" and item["highlight"] == [0, 3] and item["has_image"]
    d = client.post(f"/api/items/{item['id']}/decide", json={**SESSION, "action": "accept"})
    assert d.status_code == 200 and d.json()["decision"]["action"] == "accept"
    other = {"session": "session-bobby", "reviewer": "bob"}
    nxt = client.post("/api/claim", json={**SESSION, "after": item["id"]}).json()["item"]
    assert nxt["value"] == "cotton"
    r = client.post(f"/api/items/{nxt['id']}/decide", json={**other, "action": "reject"})
    assert r.status_code == 409 and "alice" in r.json()["detail"]
    undone = client.post("/api/undo", json=SESSION).json()
    assert undone["id"] == item["id"] and undone["decision"] is None
    assert [h["action"] for h in undone["history"]] == ["accept", "undo"]
    assert client.post("/api/renew", json={"session": SESSION["session"]}).json() == {"leases": 1}
    assert client.post("/api/release", json={"session": SESSION["session"]}).status_code == 200
    assert client.get("/api/items/99999").status_code == 404


@pytest.mark.parametrize("body", [
    {"session": "short", "reviewer": "alice"},                     # session too short
    {**SESSION, "reviewer": ""},
    {**SESSION, "reviewer": "a\nb"},                               # control characters
    {**SESSION, "kind": "everything"},
    {**SESSION, "min_score": "NaN"},
    {**SESSION, "surprise": 1},
])
def test_api_refuses_bad_bodies(client, body):
    assert client.post("/api/claim", json=body).status_code == 422


def test_api_bounds_request_sizes(client):
    r = client.post("/api/claim", content=b"{" + b" " * 70_000 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    item = client.post("/api/claim", json=SESSION).json()["item"]
    r = client.post(f"/api/items/{item['id']}/decide",
                    json={**SESSION, "action": "edit", "edited_value": "x" * 1001})
    assert r.status_code == 422


def test_texts_come_back_as_json_data_and_the_page_renders_them_as_text(client):
    hat = client.post("/api/claim", json={**SESSION, "attribute": None, "category": "hats"}
                      ).json()["item"]
    assert hat["text"] == PRODUCTS[2]["text"]  # verbatim, inside JSON, never HTML
    r = client.get(f"/api/items/{hat['id']}")
    assert r.headers["content-type"] == "application/json"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # no inline script for the policy to allow
    from mjave.web import STATIC_FILES, static_bytes
    for name in STATIC_FILES:
        if name.endswith(".js"):
            source = static_bytes(name).decode()
            for sink in (".innerHTML", ".outerHTML", ".insertAdjacentHTML", "document.write",
                         "eval(", "new Function", "setAttribute(\"on", "setAttribute('on"):
                assert sink not in source, (name, sink)


def test_images_only_from_the_image_root(client):
    db = client.app.state.db
    red, green = item_id(db, "suggestion", "Red"), item_id(db, "suggestion", "green")
    leather, regular = item_id(db, "suggestion", "leather"), item_id(db, "suggestion", "regular")
    r = client.get(f"/api/image/{red}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == png()
    assert client.get(f"/api/image/{green}").status_code == 400      # "../secret.png"
    assert client.get(f"/api/image/{leather}").status_code == 400    # symlink out of the root
    assert client.get(f"/api/image/{regular}").status_code == 415    # p2.png is no image
    assert client.get(f"/api/items/{green}").json()["has_image"] is False
    assert client.get(f"/api/items/{leather}").json()["has_image"] is False
    for path in ("/static/../review/db.py", "/static/%2e%2e%2fsecret.png", "/static/nothing.js",
                 "/api/image/..%2Fsecret.png"):
        assert client.get(path).status_code in (404, 422), path


def test_no_images_without_an_image_root(inputs):
    db = load(inputs)
    with TestClient(create_review_app(db)) as c:
        item = c.post("/api/claim", json=SESSION).json()["item"]
        assert item["has_image"] is False
        assert c.get(f"/api/image/{item['id']}").status_code == 404


def test_concurrent_http_clients_get_different_items(inputs):
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    db = load(inputs)
    app = create_review_app(db, reviewer="team")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    n = 5
    barrier = threading.Barrier(n)
    got: list[list[int]] = [[] for _ in range(n)]
    first: list[int | None] = [None] * n
    errors: list[BaseException] = []

    def reviewer(k: int) -> None:
        me = {"session": f"http-session-{k}", "reviewer": f"r{k}"}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                barrier.wait()
                item = c.post("/api/claim", json=me).json()["item"]
                first[k] = item["id"] if item else None
                barrier.wait()
                while item is not None:
                    r = c.post(f"/api/items/{item['id']}/decide", json={**me, "action": "accept"})
                    assert r.status_code == 200, r.text
                    got[k].append(item["id"])
                    item = c.post("/api/claim", json=me).json()["item"]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()

    try:
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not errors, errors
    assert None not in first and len(set(first)) == n
    flat = [i for g in got for i in g]
    assert len(flat) == len(set(flat)) == 5


def test_static_files_ship_in_the_package():
    from importlib import resources

    from mjave.web import STATIC_FILES
    folder = resources.files("mjave.web").joinpath("static")
    assert {p.name for p in folder.iterdir() if p.is_file()} >= set(STATIC_FILES)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for pattern in ("web/static/*.html", "web/static/*.css", "web/static/*.js"):
        assert pattern in pyproject
    for name in STATIC_FILES:
        text = resources.files("mjave.web").joinpath("static", name).read_text("utf-8")
        assert "http://" not in text and "https://" not in text, name  # no CDN, works offline


def test_review_cli_serves_on_loopback_by_default():
    from mjave.cli import build_parser
    args = build_parser().parse_args(["review", "s.csv", "--products", "p.jsonl", "--db", "d"])
    assert args.host == "127.0.0.1" and args.func.__name__ == "cmd_review"
    args = build_parser().parse_args(["review", "export", "--db", "d", "-o", "x.csv"])
    assert args.suggestions == "export"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy from the environment."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_review_api_docs_need_no_internet(client):
    from mjave.testing import page_assets_served_locally
    assert any(a.endswith(".js") for a in page_assets_served_locally(client, "/docs"))


def test_api_refuses_out_of_range_ids(client):
    for path in ("/api/items/99999999999999999999999", "/api/items/-1",
                 "/api/image/99999999999999999999999"):
        assert client.get(path).status_code == 422, path
    r = client.post("/api/items/99999999999999999999999/decide",
                    json={**SESSION, "action": "accept"})
    assert r.status_code == 422
    r = client.post("/api/undo", json={**SESSION, "item_id": 2**70})
    assert r.status_code == 422


def test_jsonl_suggestions_read_like_csv(inputs, tmp_path):
    # `mjave complete -o SUGGESTIONS.jsonl` writes SUGGESTIONS.review.jsonl: review reads it
    path = tmp_path / "suggestions.review.jsonl"
    rows = [dict(zip(SUGGESTION_HEADER, r)) for r in SUGGESTIONS]
    rows[2]["begin"] = rows[2]["end"] = None                   # missing offsets: searched for
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps(
        {**rows[0], "value": "Blue", "score": [1]}) + "\n", encoding="utf-8")
    got, errors = read_items(path, "suggestion")
    want, _ = read_items(inputs["suggestions"], "suggestion")
    assert [(i.product_id, i.attribute, i.value, i.score) for i in got] == \
        [(i.product_id, i.attribute, i.value, i.score) for i in want]
    assert got[0].begin == want[0].begin and got[2].begin is None
    assert len(errors) == 1 and "review.jsonl:6: field 'score'" in str(errors[0])
