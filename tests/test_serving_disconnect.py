"""Abandoned work is not computed (issue #23, case 3), and a run that wrote no model fails (case 4).

The micro-batcher drops the items of requests whose caller went away or whose deadline passed
before they reach the model; the HTTP layer notices a client closing its connection, answers a
passed deadline with 504, and a SIGTERM stops the server quietly with exit code 0. The loopback
and shutdown tests run a real uvicorn on 127.0.0.1 with a slow fake extractor (no model).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from mjave.serving.app import create_app  # noqa: E402
from mjave.serving.batcher import (BatcherNotRunning, DeadlineExceeded,  # noqa: E402
                                   MicroBatcher)
from mjave.serving.config import ServeConfig  # noqa: E402

SLOW_EXTRACTOR = '''
import threading, time


class SlowSchema:
    attributes = ("Color",)
    tags = ["O", "B-Color", "I-Color"]


class SlowExtractor:
    """Takes `per_item` seconds per item and remembers every text it was given."""

    version = "slow-1"
    schema = SlowSchema()
    info = {"kind": "slow fake"}

    def __init__(self, per_item: float = 0.0, per_batch: float = 0.0) -> None:
        self.per_item, self.per_batch = per_item, per_batch
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def predict_batch(self, items):
        with self.lock:
            self.seen.extend(item["text"] for item in items)
        time.sleep(self.per_batch + self.per_item * len(items))
        return [{"attributes": [{"name": "Color", "score": 0.9}], "values": []} for _ in items]
'''
namespace: dict = {}
exec(SLOW_EXTRACTOR, namespace)  # one definition, shared with the served subprocess below
SlowExtractor = namespace["SlowExtractor"]


def items(prefix: str, n: int) -> list[dict]:
    return [{"text": f"{prefix}-{i}", "image": None} for i in range(n)]


# ---- the batcher alone ----

def test_cancelled_and_expired_requests_are_never_computed():
    fake = SlowExtractor(per_batch=0.3)

    async def run() -> None:
        b = MicroBatcher(fake.predict_batch, max_batch_size=8, max_wait_ms=0)
        await b.start()
        busy = asyncio.ensure_future(b.submit(items("busy", 1)))
        await asyncio.sleep(0.05)                       # the model thread is busy with `busy`
        gone = asyncio.ensure_future(b.submit(items("gone", 20)))
        await asyncio.sleep(0.01)
        gone.cancel()                                   # its caller went away
        t0 = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            await b.submit(items("late", 10), timeout=0.1)
        assert time.perf_counter() - t0 < 0.25          # answered at the deadline, not after
        with pytest.raises(DeadlineExceeded):           # a deadline already gone queues nothing
            await b.submit(items("never", 1), timeout=0)
        assert len(await b.submit(items("kept", 1), timeout=5)) == 1
        assert len(await busy) == 1 and gone.cancelled()
        await b.stop()
        assert fake.seen == ["busy-0", "kept-0"]        # nothing abandoned reached the model
        assert b.stats.dropped_items == 30

    asyncio.run(run())


def test_stop_fails_the_batch_in_flight_instead_of_leaving_it_waiting():
    fake = SlowExtractor(per_batch=1.0)

    async def run() -> None:
        b = MicroBatcher(fake.predict_batch, max_batch_size=2, max_wait_ms=0)
        await b.start()
        waiting = [asyncio.ensure_future(b.submit(items(f"r{i}", 2))) for i in range(3)]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await b.stop(timeout=0.1)
        assert time.perf_counter() - t0 < 0.5
        for w in waiting:                               # every caller is answered
            with pytest.raises(BatcherNotRunning, match="shutting down"):
                await asyncio.wait_for(w, 1)
        assert fake.seen == ["r0-0", "r0-1"]            # only the batch already in flight

    asyncio.run(run())


# ---- the HTTP deadline ----

def test_deadline_is_a_504_and_drops_the_rest():
    fake = SlowExtractor(per_batch=0.1)                 # 40 items in batches of 4: 1 s
    app = create_app(fake, ServeConfig(max_batch_size=4, max_wait_ms=0, request_timeout_s=0.25))
    with TestClient(app) as c:
        r = c.post("/v1/extract", json={"items": [{"text": f"t{i}"} for i in range(40)]})
        assert r.status_code == 504
        detail = r.json()["detail"]
        assert "deadline exceeded" in detail and "request_timeout_s" in detail
        time.sleep(0.2)
        assert c.post("/v1/extract", json={"text": "after"}).status_code == 200
    assert len([t for t in fake.seen if t.startswith("t")]) <= 16   # not the ten batches
    assert "after" in fake.seen


def test_request_timeout_settings():
    assert ServeConfig(request_timeout_s=0).request_timeout is None
    assert ServeConfig().request_timeout == 60.0
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="request_timeout_s"):
            ServeConfig(request_timeout_s=bad)
    with pytest.raises(ValueError, match="shutdown_timeout_s"):
        ServeConfig(shutdown_timeout_s=-1)


def test_serve_command_takes_the_deadline(capsys, tmp_path):
    import argparse

    from mjave.cli.serve import add_serve_arguments, main
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["m"])
    assert (args.request_timeout, args.shutdown_timeout) == (60.0, 10.0)
    args = parser.parse_args(["m", "--request-timeout", "2.5", "--shutdown-timeout", "0"])
    assert (args.request_timeout, args.shutdown_timeout) == (2.5, 0.0)
    assert main([str(tmp_path), "--request-timeout", "-1"]) == 1
    assert "request_timeout_s" in capsys.readouterr().err


# ---- a real server on loopback ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no server on port {port} after {timeout} s")


def post_and_leave(port: int, body: dict, after: float) -> None:
    """Send a request, wait `after` seconds (a client timeout), close the connection."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data)
        time.sleep(after)


def test_abandoned_requests_do_not_delay_the_next_one():
    """Issue #23 case 3: 8 clients send 64 items each and give up after 0.5 s. Computing them
    all would take ~10 s; the next one-item request must not wait for them."""
    uvicorn = pytest.importorskip("uvicorn")
    fake = SlowExtractor(per_item=0.02)
    app = create_app(fake, ServeConfig(max_batch_size=32, max_wait_ms=2))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_ready(port)
        body = {"items": [{"text": "long product title " * 20 + str(i)} for i in range(64)]}
        clients = [threading.Thread(target=post_and_leave, args=(port, body, 0.5))
                   for _ in range(8)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        t0 = time.perf_counter()
        r = httpx.post(f"http://127.0.0.1:{port}/v1/extract", json={"text": "fresh"}, timeout=30)
        waited = time.perf_counter() - t0
        assert r.status_code == 200
        assert waited < 5.0, f"the fresh request waited {waited:.1f} s behind abandoned work"
        abandoned = len(fake.seen) - 1
        assert abandoned < 8 * 64 // 2, f"{abandoned} of 512 abandoned items were computed"
        stats = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["batcher"]
        assert stats["dropped_items"] > 0
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
    assert not thread.is_alive()


SERVE_SCRIPT = SLOW_EXTRACTOR + '''
import sys
from mjave.cli.serve import serve_app
from mjave.serving.app import create_app
from mjave.serving.config import ServeConfig

app = create_app(SlowExtractor(per_item=0.1), ServeConfig(max_batch_size=4, max_wait_ms=0,
                                                         shutdown_timeout_s=1.0))
serve_app(app, "127.0.0.1", int(sys.argv[1]), log_level="info")
'''


def test_sigterm_with_requests_in_flight_exits_quietly(tmp_path: Path):
    """Requests in flight and abandoned ones when SIGTERM comes: every waiting client gets an
    answer (200 if computed during the drain, else 503), the exit code is 0 and the log has
    no traceback and no cancelled tasks."""
    pytest.importorskip("uvicorn")
    script = tmp_path / "serve_slow.py"
    script.write_text(textwrap.dedent(SERVE_SCRIPT))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port)
        codes: list[int | str] = []

        def wait_for_answer(i: int) -> None:
            body = {"items": [{"text": f"r{i}-{k}"} for k in range(8)]}
            try:
                codes.append(httpx.post(f"http://127.0.0.1:{port}/v1/extract", json=body,
                                        timeout=30).status_code)
            except httpx.TransportError as e:
                codes.append(type(e).__name__)

        waiting = [threading.Thread(target=wait_for_answer, args=(i,)) for i in range(6)]
        leaving = [threading.Thread(target=post_and_leave, args=(port, {"items": [
            {"text": f"gone{i}-{k}"} for k in range(8)]}, 0.3)) for i in range(4)]
        for t in waiting + leaving:
            t.start()
        time.sleep(0.6)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        for t in waiting + leaving:
            t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Cancel" not in stderr, stderr
    assert sorted(set(codes)) <= [200, 503] and len(codes) == 6, codes
    assert 503 in codes                   # 48 items need 4.8 s; the drain allows 1 s


# ---- a training that wrote no model ----

def test_train_that_wrote_no_model_exits_non_zero(monkeypatch, tmp_path, capsys):
    import mjave.training.trainer as trainer
    from mjave.cli import main
    empty = tmp_path / "run"
    empty.mkdir()

    def no_model(cfg, progress=None):
        return trainer.TrainResult(empty, 0, None, [], 0)

    monkeypatch.setattr(trainer, "train", no_model)
    code = main(["train", "--set", f"data.train={tmp_path / 'train.jsonl'}",
                 "--set", f"output_dir={empty}"])
    captured = capsys.readouterr()
    assert code != 0
    assert "training produced no model" in captured.err and str(empty) in captured.err
    assert "best epoch" not in captured.out
