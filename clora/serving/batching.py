"""Dynamic batching: concurrent requests queued and answered in one mixed-adapter forward pass.

Multi-LoRA servers (S-LoRA, Punica, vLLM, LoRAX) answer requests for different adapters
together. Here every input carries its own adapter choice (``clora.adapters.selection``),
so a micro-batch may mix tasks and modes freely and each input gets the answer it would
get alone. The batcher takes the first waiting request, then whatever else arrives within
``wait_s`` up to ``max_batch`` inputs, and answers them in one call on the inference
thread. While that runs, new requests queue up and form the next batch. A full queue is
refused (``QueueFull``, HTTP 503) instead of growing without bound.

A batch whose inputs differ much in length is answered in length groups, shortest
first, each group's requests released as soon as it is done: a short input pays neither
for a long neighbour's padding nor waits for its pass (``length_groups``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


#: inputs whose lengths differ by more than this factor are answered in separate passes
LENGTH_RATIO = 4.0


def length_groups(lengths: list[int], ratio: float = LENGTH_RATIO) -> list[list[int]]:
    """Indices of ``lengths`` in groups, shortest first, within each of which the longest is at most
    ``ratio`` times the shortest (at least 1 character counted)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and max(lengths[i], 1) <= ratio * max(lengths[groups[-1][0]], 1):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class QueueFull(Exception):
    """More inputs are waiting than the queue holds."""


@dataclass
class _Request:
    queries: list
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """``await submit(queries)`` -> their answers; ``answer(queries)`` runs on one inference thread.

    ``observe(size)`` is told each batch's number of inputs (for metrics).
    """

    def __init__(self, answer: Callable[[list], list], max_batch: int, wait_s: float, max_queue: int,
                 observe: Callable[[int], None] | None = None):
        self.answer, self.max_batch, self.wait_s, self.max_queue = answer, max_batch, wait_s, max_queue
        self.observe = observe or (lambda size: None)
        self.waiting = 0  # inputs queued, not yet in a batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        # one thread: torch already spreads one batch over every core
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clora-infer")

    async def start(self) -> None:
        """Start the batching task and the inference thread (now, not at the first request, so that it
        takes the priority of the thread that starts it before that one lowers its own)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())
        await asyncio.get_running_loop().run_in_executor(self._pool, threading.get_native_id)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, queries: list) -> list:
        if self.waiting + len(queries) > self.max_queue:
            raise QueueFull(f"{self.waiting} inputs are waiting (the queue holds {self.max_queue}); try again later")
        request = _Request(queries, asyncio.get_running_loop().create_future())
        self.waiting += len(queries)
        self._queue.put_nowait(request)
        return await request.future

    async def _next_batch(self) -> list[_Request]:
        batch = [await self._queue.get()]
        size = len(batch[0].queries)
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while size < self.max_batch:
            if self._queue.empty():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                request = self._queue.get_nowait()
            batch.append(request)
            size += len(request.queries)
        self.waiting -= size
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            longest = [max(len(q.text) for q in request.queries) for request in batch]
            for group in length_groups(longest):
                await self._answer_together([batch[i] for i in group])

    async def _answer_together(self, batch: list[_Request]) -> None:
        queries = [q for request in batch for q in request.queries]
        self.observe(len(queries))
        try:
            answers = await asyncio.get_running_loop().run_in_executor(self._pool, self.answer, queries)
        except Exception:  # noqa: BLE001 - one bad request must not fail its batch-mates
            await self._answer_alone(batch)
            return
        start = 0
        for request in batch:
            if not request.future.done():
                request.future.set_result(answers[start:start + len(request.queries)])
            start += len(request.queries)

    async def _answer_alone(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        for request in batch:
            try:
                result = await loop.run_in_executor(self._pool, self.answer, request.queries)
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                if not request.future.done():
                    request.future.set_exception(exc)
                continue
            if not request.future.done():
                request.future.set_result(result)
