"""An asyncio micro-batcher: items of concurrent requests run through the model together.

A forward pass over 32 texts costs little more than over one, so under load the server gathers
the items that arrive within `max_wait_ms` of the oldest waiting one (or until `max_batch_size`
are waiting) and sends them to `predict_batch` in ONE call, in a single worker thread so the event
loop keeps accepting requests meanwhile. Items that queued while the previous batch ran leave at
once (their wait is counted from when they arrived), so throughput grows with load and an idle
server adds at most `max_wait_ms` of latency.

Failure isolation: when a batch raises, each of its items is retried alone, so only the requests
whose items really fail see an error; the others get their results.

Nobody waits for abandoned work: the items of a request whose caller stopped waiting (its task
was cancelled, e.g. because the HTTP client went away) or whose deadline passed are dropped from
the queue before they reach the model, so a burst of abandoned requests cannot delay the next
one. `stop()` drains what is queued for a bounded time, then fails the rest (and the batch in
flight) with `BatcherNotRunning`, so no caller is left waiting on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

PredictBatch = Callable[[list[dict[str, Any]]], Sequence[dict[str, Any]]]


class BatcherNotRunning(RuntimeError):
    """The batcher has not started yet or is shutting down (the service is not ready)."""


class BatcherOverloaded(RuntimeError):
    """More items are waiting than the queue bound allows; the client should retry later."""


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed before all its items were computed (the rest were
    dropped)."""


class ItemFailed(RuntimeError):
    """`predict_batch` raised on this item even when run alone; `__cause__` holds the error and
    `item` the item (so the caller can say which of its items failed)."""

    def __init__(self, message: str, item: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.item = item


@dataclass
class _Entry:
    item: dict[str, Any]
    future: asyncio.Future
    arrived: float
    deadline: float | None = None  # loop time after which the item is not worth computing


@dataclass
class BatcherStats:
    """Counters for /readyz and the benchmark: how well batching works under the real load."""

    batches: int = 0
    items: int = 0
    failed_items: int = 0
    largest_batch: int = 0
    dropped_items: int = 0  # never computed: their caller went away or their deadline passed

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "items": self.items, "failed_items": self.failed_items,
                "largest_batch": self.largest_batch, "dropped_items": self.dropped_items,
                "mean_batch_size": round(self.items / self.batches, 2) if self.batches else 0.0}


class MicroBatcher:
    """Queue items from many requests; run them in batches through `predict_batch`.

    `start()` and `submit()` must be called from the same running event loop (the server's).
    """

    def __init__(self, predict_batch: PredictBatch, max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, max_queue_items: int = 10_000) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self._predict_batch = predict_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_items = max_queue_items
        self.stats = BatcherStats()
        self._pending: deque[_Entry] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False
        self._in_flight: list[_Entry] = []  # the batch the model thread is computing

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()` while the worker task is alive."""
        return (self._worker is not None and not self._worker.done() and not self._stopping)

    async def start(self) -> None:
        """Start the worker task and its (single) model thread in the running loop."""
        if self.running:
            return
        self._stopping = False
        self._wakeup = asyncio.Event()
        # One thread: the model is not assumed thread-safe, and torch parallelises inside a batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjave-batch")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="mjave-batcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop; anything still waiting after `timeout` (the batch
        in flight included: its thread finishes, its results are not waited for) fails with
        `BatcherNotRunning`. New submissions are refused from the first moment."""
        if self._worker is None:
            return
        self._stopping = True
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout)
        except asyncio.TimeoutError:
            self._worker.cancel()
            left = len(self._pending) + len(self._in_flight)
            log.warning("batcher did not drain within %.1f s; failing %d waiting items",
                        timeout, left)
        for e in [*self._in_flight, *self._pending]:
            if not e.future.done():
                e.future.set_exception(BatcherNotRunning("the server is shutting down"))
        self._pending.clear()
        self._in_flight = []
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._worker = None
        self._executor = None

    async def submit(self, items: Sequence[dict[str, Any]],
                     timeout: float | None = None) -> list[dict[str, Any]]:
        """The results of `items` in order. Raises `ItemFailed` (from the first failing item),
        `BatcherNotRunning`, `BatcherOverloaded`, or `DeadlineExceeded` when `timeout` seconds
        pass first. Cancelling the caller, or the deadline passing, drops the items not yet
        computed."""
        if not self.running:
            raise BatcherNotRunning("the model is not ready")
        if len(self._pending) + len(items) > self.max_queue_items:
            raise BatcherOverloaded(f"more than {self.max_queue_items} items are waiting")
        if not items:
            return []
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("the deadline passed before the items were queued")
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if timeout is None else now + timeout
        entries = [_Entry(item, loop.create_future(), now, deadline) for item in items]
        self._pending.extend(entries)
        assert self._wakeup is not None
        self._wakeup.set()
        futures = [e.future for e in entries]
        try:  # asyncio.wait, not wait_for(gather): nothing is left with an unretrieved error
            _, late = await asyncio.wait(futures, timeout=timeout)
        except asyncio.CancelledError:  # the caller went away: its queued items are skipped
            _abandon(futures)
            raise
        if late:
            _abandon(futures)
            raise DeadlineExceeded(f"not done within {timeout:g} s")
        errors = [f.exception() for f in futures]  # every one read: none logged as lost
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def _wanted(self, entry: _Entry, now: float) -> bool:
        """Whether `entry` still has someone waiting for it; an item whose deadline passed is
        failed here, and either way an unwanted item is counted as dropped."""
        if not entry.future.done() and entry.deadline is not None and now >= entry.deadline:
            entry.future.set_exception(DeadlineExceeded("the deadline passed while queued"))
        if entry.future.done():
            self.stats.dropped_items += 1
            return False
        return True

    async def _next_batch(self) -> list[_Entry]:
        """Wait for the first item, then until the batch is full or the oldest item's wait ends.
        Items nobody waits for any more are dropped on the way."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._pending and not self._wanted(self._pending[0], loop.time()):
                self._pending.popleft()
            if self._pending:
                break
            if self._stopping:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._pending[0].arrived + self.max_wait
        while len(self._pending) < self.max_batch_size and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch: list[_Entry] = []
        now = loop.time()
        while self._pending and len(batch) < self.max_batch_size:
            e = self._pending.popleft()
            if self._wanted(e, now):
                batch.append(e)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                if self._stopping and not self._pending:
                    return
                continue
            self._in_flight = batch
            try:
                await self._run_batch(batch)
            except Exception as exc:  # a bug here must not kill the worker and hang everyone
                log.exception("batcher failure")
                for e in batch:
                    _fail(e, exc)
            finally:
                self._in_flight = []

    async def _call(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._predict_batch, items)
        results = list(results)
        if len(results) != len(items):
            raise RuntimeError(f"predict_batch returned {len(results)} results for "
                               f"{len(items)} items")
        return results

    async def _run_batch(self, batch: list[_Entry]) -> None:
        started = time.perf_counter()
        try:
            results = await self._call([e.item for e in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._record(batch, started, failed=1)
                _fail(batch[0], exc)
                return
            log.warning("a batch of %d failed (%s: %s); retrying its items one by one",
                        len(batch), type(exc).__name__, exc)
            failed = 0
            for e in batch:
                if e.future.done():
                    continue
                try:
                    (result,) = await self._call([e.item])
                except Exception as item_exc:
                    failed += 1
                    _fail(e, item_exc)
                else:
                    e.future.set_result(result)
            self._record(batch, started, failed=failed)
            return
        for e, r in zip(batch, results):
            if not e.future.done():
                e.future.set_result(r)
        self._record(batch, started, failed=0)

    def _record(self, batch: list[_Entry], started: float, failed: int) -> None:
        s = self.stats
        s.batches += 1
        s.items += len(batch)
        s.failed_items += failed
        s.largest_batch = max(s.largest_batch, len(batch))
        log.debug("batch of %d in %.1f ms", len(batch), (time.perf_counter() - started) * 1000)


def _abandon(futures: list[asyncio.Future]) -> None:
    """Nobody will read these results: cancel what is pending (the worker then drops it) and
    read the errors of what is done, so asyncio does not log them as never retrieved."""
    for f in futures:
        if not f.done():
            f.cancel()
        elif not f.cancelled():
            f.exception()


def _fail(entry: _Entry, exc: BaseException) -> None:
    """Fail one item, keeping the model's exception as the cause (logged by the app)."""
    if entry.future.done():
        return
    err = ItemFailed(f"{type(exc).__name__}: {exc}", entry.item)
    err.__cause__ = exc
    entry.future.set_exception(err)
