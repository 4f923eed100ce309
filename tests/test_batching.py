"""The serving micro-batcher: batches across requests, length groups, a bounded queue."""

import asyncio
import time

import pytest

from clora.serving.batching import MicroBatcher, QueueFull, length_groups
from clora.serving.inference import Query


def test_length_groups_keep_short_inputs_apart_from_long_ones():
    assert length_groups([30, 28, 10000, 35, 5000]) == [[1, 0, 3], [4, 2]]
    assert length_groups([30, 31, 29]) == [[2, 0, 1]]  # similar lengths: one pass, as before
    assert length_groups([0, 3, 5]) == [[0, 1], [2]] and length_groups([]) == []



def test_requests_share_a_pass_and_short_ones_are_answered_first():
    calls, answered = [], {}

    def answer(queries):
        calls.append([q.text for q in queries])
        time.sleep(0.05 if any(len(q.text) > 100 for q in queries) else 0.0)
        return [q.text.upper() for q in queries]

    async def scenario():
        batcher = MicroBatcher(answer, max_batch=8, wait_s=0.05, max_queue=8)
        batcher.start()

        async def ask(name, text):
            answered[name] = (await batcher.submit([Query(text)]), time.perf_counter())

        await asyncio.gather(ask("long", "a" * 500), ask("short1", "hi"), ask("short2", "yo"))
        with pytest.raises(QueueFull):
            batcher.waiting = 8
            await batcher.submit([Query("x")])
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [["hi", "yo"], ["a" * 500]]  # one pass for the short pair, then the long one
    assert answered["short1"][0] == ["HI"]
    assert answered["short2"][1] < answered["long"][1]  # released before the long pass ended
