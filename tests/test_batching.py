"""The serving micro-batcher: batches across requests, length groups, a bounded queue."""

import asyncio
import os
import sys
import threading

import pytest

from clora.errors import ConfigError
from clora.serving.app import ServeSettings
from clora.serving.batching import MicroBatcher, QueueFull, length_groups
from clora.serving.inference import Query
from clora.serving.priority import lower_this_thread


def test_length_groups_keep_short_inputs_apart_from_long_ones():
    assert length_groups([30, 28, 10000, 35, 5000]) == [[1, 0, 3], [4, 2]]
    assert length_groups([30, 31, 29]) == [[2, 0, 1]]  # similar lengths: one pass, as before
    assert length_groups([0, 3, 5]) == [[0, 1], [2]] and length_groups([]) == []



def test_requests_share_a_pass_and_short_ones_are_answered_first():
    """The long pass waits (in its worker thread) until the short pair's answers have reached their
    callers: it can only return if they were released before it ended. No clock is read."""
    calls, answered = [], {}
    short_released = threading.Event()

    def answer(queries):
        calls.append([q.text for q in queries])
        if any(len(q.text) > 100 for q in queries):
            answered["short released during the long pass"] = short_released.wait(timeout=30)
        return [q.text.upper() for q in queries]

    async def scenario():
        batcher = MicroBatcher(answer, max_batch=8, wait_s=0.05, max_queue=8)
        await batcher.start()

        async def ask(name, text):
            answered[name] = await batcher.submit([Query(text)])
            if name == "short2":
                short_released.set()

        await asyncio.gather(ask("long", "a" * 500), ask("short1", "hi"), ask("short2", "yo"))
        with pytest.raises(QueueFull):
            batcher.waiting = 8
            await batcher.submit([Query("x")])
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [["hi", "yo"], ["a" * 500]]  # one pass for the short pair, then the long one
    assert answered["short1"] == ["HI"] and answered["long"] == ["A" * 500]
    assert answered["short released during the long pass"]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_event_loop_yields_to_inference():
    """The loop thread turns 10 nicer after start(); the inference thread, started before, keeps its
    priority, and a worker thread the loop starts afterwards inherits the lower one."""
    seen = {}
    me = lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # noqa: E731

    def answer(queries):
        seen["inference"] = me()
        return [q.text for q in queries]

    async def scenario():
        seen["before"] = me()
        batcher = MicroBatcher(answer, max_batch=4, wait_s=0.0, max_queue=8)
        await batcher.start()
        assert lower_this_thread(10)
        seen["loop"] = me()
        await batcher.submit([Query("x")])
        seen["worker"] = await asyncio.get_running_loop().run_in_executor(None, me)
        await batcher.stop()

    # in a thread of its own: a thread's priority cannot be raised back, and pytest's must stay
    runner = threading.Thread(target=asyncio.run, args=(scenario(),))
    runner.start()
    runner.join()
    base = seen["before"]
    assert seen == {"before": base, "loop": min(19, base + 10), "inference": base, "worker": min(19, base + 10)}


def test_loop_nice_is_checked():
    with pytest.raises(ConfigError, match="loop nice must be in 0-19, got 20"):
        ServeSettings(loop_nice=20)
    assert lower_this_thread(0) is False
