"""The review queue's orders (`mjave.review.order`: score, uncertainty, gain, random) through
the pure function, `ReviewDB.claim` and the API, and the per-attribute precision of
`GET /api/stats`. Every expected order and count below is worked out by hand from the scores
(the random order: from the hash it is defined by)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mjave.data.records import Record
from mjave.review.db import (ADDED_COLUMNS, SCHEMA, Filters, ReviewDB, read_decisions,
                             read_fair_skips)
from mjave.review.inputs import ItemIn
from mjave.review.order import QueueRow, draw_key, next_in_order, queue_order, uncertainty

# (product, attribute, value, score); ids are 1..7 in this order. |score - 0.5|:
# 1: .45  2: .05  3: .02  4: .20  5: .40  6: .12  7: .20
ROWS = [("p1", "Color", "red", 0.95), ("p2", "Color", "blue", 0.55),
        ("p3", "Color", "green", 0.48), ("p4", "Color", "black", 0.70),
        ("p1", "Fit", "slim", 0.90), ("p2", "Fit", "loose", 0.62),
        ("p3", "Material", "cotton", 0.30)]
TEXTS = {"p1": "red shirt, slim fit", "p2": "blue jeans, loose fit",
         "p3": "green cotton hat", "p4": "black boots"}
BY_SCORE = [1, 5, 4, 6, 2, 3, 7]
BY_UNCERTAINTY = [3, 2, 6, 4, 7, 5, 1]
BY_GAIN = [3, 6, 7, 2, 5, 4, 1]   # rounds: (3 Color, 6 Fit, 7 Material), (2, 5), (4), (1)
VALUE = {i + 1: r[2] for i, r in enumerate(ROWS)}
SESSION = {"session": "session-alice", "reviewer": "alice"}


def queue_rows() -> list[QueueRow]:
    return [QueueRow(i + 1, a, s) for i, (_, a, _, s) in enumerate(ROWS)]


def test_orders_by_hand():
    assert uncertainty(0.48) == pytest.approx(0.02)
    assert queue_order(queue_rows()) == BY_SCORE  # the default is today's
    assert queue_order(queue_rows(), "score") == BY_SCORE
    assert queue_order(queue_rows(), "uncertainty") == BY_UNCERTAINTY
    assert queue_order(queue_rows(), "gain") == BY_GAIN
    # another centre (a run's threshold): 0.9 is closest to the Fit value "slim"
    assert queue_order(queue_rows(), "uncertainty", centre=0.9)[0] == 5


def test_gain_gives_a_frequent_attribute_one_turn_per_round():
    rows = [QueueRow(i, "Color", 0.5 + i / 100) for i in range(1, 11)]
    rows.append(QueueRow(11, "Fit", 0.9))
    assert queue_order(rows, "uncertainty")[-1] == 11       # ten Colors first
    assert queue_order(rows, "gain")[:3] == [1, 11, 2]       # Fit takes the first round's turn


def test_ties_are_broken_by_id_and_unknown_orders_refused():
    rows = [QueueRow(5, "A", 0.6), QueueRow(2, "B", 0.4), QueueRow(9, "A", 0.4)]
    assert queue_order(rows, "uncertainty") == [2, 5, 9]
    with pytest.raises(ValueError, match="uncertainty"):
        queue_order(rows, "shuffled")  # type: ignore[arg-type]


def test_next_in_order_skips_and_wraps_but_never_back_onto_the_skipped_one():
    order = [3, 2, 6, 4]
    assert next_in_order(order, {2, 6, 4}) == 2
    assert next_in_order(order, {3, 2, 6, 4}, after=6) == 4
    assert next_in_order(order, {3, 2, 6}, after=6) == 3      # wraps to the top
    assert next_in_order(order, {6}, after=6) is None
    assert next_in_order(order, {2, 6}, after=99) == 2         # unknown `after`: the top


@pytest.fixture
def db(tmp_path: Path) -> ReviewDB:
    items = [ItemIn("suggestion", p, a, v, s) for p, a, v, s in ROWS]
    products = {p: [Record(id=f"r-{p}", text=t)] for p, t in TEXTS.items()}
    d = ReviewDB(tmp_path / "review.sqlite")
    d.load(items, products)
    assert [d.item(i)["value"] for i in range(1, 8)] == [r[2] for r in ROWS]
    return d


def claims(db: ReviewDB, order: str, n: int, filters: Filters = Filters()) -> list[int]:
    """Decide (accept) the claimed item n times, each claim going on after the last one."""
    out, after = [], None
    for _ in range(n):
        item = db.claim("session-a", "alice", filters=filters, after=after, order=order)
        if item is None:
            break
        out.append(item["id"])
        db.decide(item["id"], "accept", "alice", session="session-a")
        after = item["id"]
    return out


@pytest.mark.parametrize("order,expected", [("score", BY_SCORE), ("uncertainty", BY_UNCERTAINTY),
                                            ("gain", BY_GAIN)])
def test_claim_follows_the_order_to_the_end(db, order, expected):
    assert claims(db, order, 10) == expected


def test_claim_default_is_by_score(db):
    assert db.claim("session-a", "alice")["id"] == BY_SCORE[0]


def test_claim_skips_items_others_hold_and_skips_wrap_around(db):
    first = db.claim("session-a", "alice", order="uncertainty")
    second = db.claim("session-b", "bob", order="uncertainty")
    assert (first["id"], second["id"]) == (3, 2)
    # alice skips 3 (unleased again by her claim): 2 is bob's, so 6
    assert db.claim("session-a", "alice", after=3, order="uncertainty")["id"] == 6
    # skipping the last one wraps to the top: 3, free again
    assert db.claim("session-a", "alice", after=1, order="uncertainty")["id"] == 3


def test_claim_in_gain_order_follows_the_filters(db):
    assert claims(db, "gain", 10, Filters(attribute="Color")) == [3, 2, 4, 1]


# ---- the API ----

@pytest.fixture
def app_for(db):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mjave.review.app import create_review_app

    def make(**kwargs):
        return TestClient(create_review_app(db, reviewer="alice", **kwargs))
    return make


def test_api_claim_with_an_order(app_for):
    with app_for() as client:
        assert client.get("/api/meta").json()["order"] == "score"
        r = client.post("/api/claim", json={**SESSION, "order": "uncertainty"})
        assert r.status_code == 200 and r.json()["item"]["value"] == "green"
        r = client.post("/api/claim", json=SESSION)
        assert r.json()["item"]["value"] == "red"                  # today's default
        assert client.post("/api/claim", json={**SESSION, "order": "shuffled"}).status_code == 422
        r = client.post("/api/claim", json={**SESSION, "order": "random"})
        assert r.status_code == 200 and r.json()["item"]["value"] in {v for _, _, v, _ in ROWS}


def test_api_default_order_and_gain_round_robins_attributes(app_for):
    with app_for(order="gain") as client:
        assert client.get("/api/meta").json()["order"] == "gain"
        seen, after = [], None
        for _ in range(5):
            body = {**SESSION, **({"after": after} if after else {})}
            item = client.post("/api/claim", json=body).json()["item"]
            seen.append(item["attribute"])
            client.post(f"/api/items/{item['id']}/decide", json={**SESSION, "action": "accept"})
            after = item["id"]
        assert seen == ["Color", "Fit", "Material", "Color", "Fit"]
    with pytest.raises(ValueError, match="queue order"):
        app_for(order="shuffled")


def wilson_lower(correct: int, n: int, z: float = 1.2815515655446004) -> float:
    """The one-sided Wilson bound at 90 % (z = Phi^-1(0.9)), written out here."""
    p = correct / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (
        1 + z * z / n)


def test_api_stats_per_attribute(app_for, db):
    decide = {1: "accept", 2: "reject", 3: "edit", 4: "accept", 5: "accept"}
    for item_id, action in decide.items():
        db.decide(item_id, action, "alice", edited_value="teal" if action == "edit" else None)
    db.decide(4, "reject", "bob")   # the last decision counts: Color 1 accepted of 4
    with app_for() as client:
        stats = client.get("/api/stats").json()
        assert client.get("/api/stats?kind=everything").status_code == 422
    assert stats["kind"] == "suggestion" and stats["confidence"] == 0.9
    rows = {a["attribute"]: a for a in stats["attributes"]}
    assert list(rows) == ["Color", "Fit", "Material"]
    color = rows["Color"]
    assert (color["total"], color["decided"], color["accepted"], color["rejected"],
            color["edited"]) == (4, 4, 1, 2, 1)
    assert color["precision"] == pytest.approx(0.25)
    assert color["lower_bound"] == pytest.approx(wilson_lower(1, 4))
    assert 0 < color["lower_bound"] < 0.25
    fit = rows["Fit"]
    assert (fit["decided"], fit["accepted"], fit["precision"]) == (1, 1, 1.0)
    assert fit["lower_bound"] == pytest.approx(wilson_lower(1, 1))
    material = rows["Material"]
    assert (material["decided"], material["precision"], material["lower_bound"]) == (0, None,
                                                                                     None)
    overall = stats["overall"]
    assert (overall["total"], overall["decided"], overall["accepted"]) == (7, 5, 2)
    assert overall["precision"] == pytest.approx(0.4)


def test_page_has_the_order_choice_and_the_stats_table():
    from mjave.web import static_bytes
    html = static_bytes("review.html").decode()
    js = static_bytes("review.js").decode()
    for value in ("score", "uncertainty", "gain", "random"):
        assert f'<option value="{value}">' in html
    assert 'id="stats-rows"' in html and "/api/stats" in js and "f-order" in js


def test_cli_order_option():
    from mjave.cli import build_parser
    args = build_parser().parse_args(["review", "--db", "d", "--order", "gain"])
    assert args.order == "gain"
    assert build_parser().parse_args(["review", "--db", "d"]).order == "score"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["review", "--db", "d", "--order", "shuffled"])


def test_page_starts_in_the_servers_order_and_shows_precision(db):
    """In Chromium (skips without it, as tests/test_browser.py): the page claims in `--order`,
    the Order choice switches it, and the stats table follows the decisions."""
    import shutil
    import threading
    import time
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("no Chromium")
    from mjave.review.app import create_review_app
    server = uvicorn.Server(uvicorn.Config(create_review_app(db, reviewer="alice", order="gain"),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def value_is(v: str) -> None:
                page.wait_for_function(f"() => document.getElementById('c-value')"
                                       f".textContent === {v!r}")
            page.goto(f"http://127.0.0.1:{port}/")
            value_is("green")                                 # gain: the most uncertain first
            assert page.input_value("#f-order") == "gain"
            page.keyboard.press("a")
            value_is("loose")                                 # then Fit's turn
            page.click("#stats summary")
            page.wait_for_function("() => document.getElementById('stats-rows')"
                                   ".textContent.includes('100.0%')")
            rows = page.locator("#stats-rows tr").all_inner_texts()
            assert rows[0].split("\t")[:4] == ["Color", "1", "1", "0"]
            page.select_option("#f-order", "score")
            value_is("red")
            assert not errors, errors
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)


# ---- random order: a fair sample (issue #33) ----

def test_random_order_is_the_hash_order_of_what_the_items_are(tmp_path):
    items = [ItemIn("suggestion", p, a, v, s) for p, a, v, s in ROWS]
    products = {p: [Record(id=f"r-{p}", text=t)] for p, t in TEXTS.items()}
    d = ReviewDB(tmp_path / "a.sqlite", random_seed="s1")
    d.load(items, products)
    by_hand = sorted(range(1, 8), key=lambda i: (draw_key("s1", ROWS[i - 1][0], ROWS[i - 1][1],
                                                          ROWS[i - 1][2]), i))
    assert by_hand not in (BY_SCORE, BY_UNCERTAINTY, BY_GAIN)     # blind to the score
    assert claims(d, "random", 10) == by_hand
    # reloading the queue with other scores keeps the shuffle (the hash does not read them)
    e = ReviewDB(tmp_path / "b.sqlite", random_seed="s1")
    e.load([ItemIn("suggestion", p, a, v, 1.0 - s) for p, a, v, s in ROWS], products)
    assert claims(e, "random", 10) == by_hand
    # another database draws another sample; a database keeps its seed when opened again
    f = ReviewDB(tmp_path / "c.sqlite", random_seed="s2")
    f.load(items, products)
    assert claims(f, "random", 10) != by_hand
    assert ReviewDB(tmp_path / "a.sqlite", random_seed="other").random_seed == "s1"
    assert ReviewDB(tmp_path / "d.sqlite").random_seed != ReviewDB(tmp_path / "e.sqlite").random_seed


def _drawn(db: ReviewDB) -> dict[int, tuple]:
    return {r["item_id"]: (r["queue"], r["fair"]) for r in read_decisions(db.path)}


def test_only_an_unfiltered_random_claim_records_a_fair_decision(db):
    first = db.claim("s", "alice", order="random")["id"]
    db.decide(first, "accept", "alice", session="s")
    other = db.claim("s", "alice", order="random", filters=Filters(attribute="Fit"))["id"]
    db.decide(other, "reject", "alice", session="s")
    scored = db.claim("s", "alice", order="score")["id"]
    db.decide(scored, "accept", "alice", session="s")
    by_hand = next(i for i in range(1, 8) if i not in (first, other, scored))
    db.open(by_hand, "s", "alice")
    db.decide(by_hand, "accept", "alice", session="s")
    db.decide(next(i for i in range(1, 8) if i not in (first, other, scored, by_hand)),
              "accept", "alice")                                   # no session at all
    drawn = _drawn(db)
    assert drawn[first] == ("random", 1)
    assert drawn[other] == ("random", 0)                            # a filtered queue
    assert drawn[scored] == ("score", 0) and drawn[by_hand] == (None, 0)
    assert sum(f for _, f in drawn.values()) == 1


def test_going_back_or_undoing_keeps_how_the_item_was_drawn(db):
    first = db.claim("s", "alice", order="random")["id"]
    db.decide(first, "accept", "alice", session="s")
    db.open(first, "s2", "alice")                                    # back to it, by hand
    db.decide(first, "reject", "alice", session="s2")
    assert _drawn(db)[first] == ("random", 1)
    db.undo("alice", session="s3")                                   # the reject taken back
    db.decide(first, "edit", "alice", session="s3", edited_value="crimson")
    assert _drawn(db)[first] == ("random", 1)


def test_a_database_written_before_the_draw_columns_gains_them(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite"
    added = ", ".join(ADDED_COLUMNS["decisions"])
    assert ADDED_COLUMNS["leases"] == ADDED_COLUMNS["decisions"]
    old_schema = SCHEMA.replace(",\n  " + added, "")
    old_schema = old_schema.replace(",\n         d.queue, d.fair", "")
    skips = old_schema.index("CREATE TABLE IF NOT EXISTS skips")    # recorded later still
    old_schema = old_schema[:skips] + old_schema[old_schema.index("CREATE VIEW"):]
    # items had no `draw` column (nor its index) and the score order had its own index
    old_schema = old_schema.replace(", " + ", ".join(ADDED_COLUMNS["items"]), "")
    indexes = old_schema.index("CREATE INDEX IF NOT EXISTS items_score")
    old_schema = (old_schema[:indexes]
                  + "CREATE INDEX IF NOT EXISTS items_queue ON items (kind, score DESC, id);\n"
                  + old_schema[old_schema.index("CREATE TABLE IF NOT EXISTS decisions"):])
    assert not any(word in old_schema for word in ("fair", "draw", "gain_round"))
    with sqlite3.connect(path) as c:
        c.executescript(old_schema)
        c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        c.execute("INSERT INTO meta VALUES ('random_seed', 's1')")
        c.executemany("INSERT INTO items (id, kind, product_id, attribute, value, score) VALUES "
                      "(?, 'suggestion', ?, ?, ?, ?)",
                      [(i + 1, *row) for i, row in enumerate(ROWS)])
        c.execute("INSERT INTO decisions (item_id, product_id, attribute, value, action, "
                  "reviewer, time) VALUES (1, 'p1', 'Color', 'red', 'accept', 'bob', 'then')")
        c.execute("INSERT INTO state VALUES (1, 1)")
    assert "fair" not in read_decisions(path)[0]                     # read as it is, read-only
    db = ReviewDB(path)                                              # opened for writing
    assert read_decisions(path)[0]["fair"] == 0 and read_decisions(path)[0]["queue"] is None
    # every item gains its round under gain (the decided item 1 keeps its place in them)
    assert db.claim("x", "bob", order="gain")["id"] == BY_GAIN[0]
    db.release("x")
    # and its place in the random order: the hash order, as a new file's
    by_hand = sorted(range(2, 8), key=lambda i: (draw_key("s1", *ROWS[i - 1][:3]), i))
    assert claims(db, "random", 10) == by_hand
    with sqlite3.connect(path) as c:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "items_queue" not in names and {"items_score", "items_draw"} <= names


def test_a_skip_of_an_item_drawn_at_random_is_recorded_until_it_is_decided(db):
    first = db.claim("s", "alice", order="random")["id"]
    second = db.claim("s", "alice", order="random", after=first)["id"]    # first skipped
    assert second != first
    assert [r["item_id"] for r in read_fair_skips(db.path)] == [first]
    # skipping the second, drawn at random too, from a claim in another order: still a skip
    # of the fair sample; skips of items drawn by score or from a filtered queue are not
    scored = db.claim("s", "alice", order="score", after=second)["id"]
    fit = db.claim("s", "alice", order="random", filters=Filters(attribute="Fit"),
                   after=scored)["id"]
    db.claim("s", "alice", order="random", filters=Filters(attribute="Fit"), after=fit)
    assert [r["item_id"] for r in read_fair_skips(db.path)] == sorted([first, second])
    assert read_fair_skips(db.path, "conflict") == []
    # a skip of an item the session does not hold (a stale id) records nothing
    db.claim("other", "bob", order="score", after=7)
    db.release("other")
    assert len(read_fair_skips(db.path)) == 2
    # deciding a skipped item takes it out: the sample has it again
    db.open(first, "s", "alice")
    db.decide(first, "reject", "alice", session="s")
    assert [r["item_id"] for r in read_fair_skips(db.path)] == [second]
    assert {"product_id", "attribute", "value"} <= set(read_fair_skips(db.path)[0])


def test_a_database_written_before_skips_were_recorded_has_none(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite"
    start = SCHEMA.index("CREATE TABLE IF NOT EXISTS skips")
    end = SCHEMA.index("CREATE VIEW IF NOT EXISTS last_decisions")
    with sqlite3.connect(path) as c:
        c.executescript(SCHEMA[:start] + SCHEMA[end:])
        c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    assert read_fair_skips(path) == []                               # read-only, as it is
    ReviewDB(path)                                                   # opened for writing
    assert read_fair_skips(path) == []
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'skips'").fetchone()


def test_decisions_and_skips_read_from_one_snapshot_read_only(db, tmp_path):
    import hashlib
    import sqlite3

    from mjave.review.db import read_review_state
    first = db.claim("s", "alice", order="random")["id"]
    second = db.claim("s", "alice", order="random", after=first)["id"]      # first skipped
    db.open(second, "s", "alice")
    db.decide(second, "accept", "alice", session="s")
    before = hashlib.sha256(Path(db.path).read_bytes()).hexdigest()
    decisions, skips = read_review_state(db.path)
    assert hashlib.sha256(Path(db.path).read_bytes()).hexdigest() == before
    assert (decisions, skips) == (read_decisions(db.path), read_fair_skips(db.path))
    assert [d["item_id"] for d in decisions] == [second]
    assert [s["item_id"] for s in skips] == [first]
    # every reader refuses a missing file and a file that is no review database alike
    for read in (read_decisions, read_fair_skips, read_review_state):
        with pytest.raises(FileNotFoundError):
            read(tmp_path / "missing.sqlite")
        (tmp_path / "junk.sqlite").write_text("not a database")
        with pytest.raises(sqlite3.DatabaseError, match="not a review database"):
            read(tmp_path / "junk.sqlite")
