"""Concurrent predictions: no global lock, and each call gets exactly the answers it gets alone.

Which adapters act on an input is passed with each call (``clora.adapters.selection``),
never left on the shared layers, so threads with different tasks and modes cannot see
each other's choice.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from clora.serving.inference import load_library

TEXTS = ["apple oven the recipe", "river boat very mast quick", "stone flour again", "cloud anchor tide",
         "lamp spoon kitchen", "horse deck crew there", "violin bake pepper", "garden sail tide crew"]
#: (mode, task) per call: every mode, both tasks, mixed per-input tasks
CALLS = [("routed", None), ("oracle", "t0"), ("oracle", "t1"), ("sum", None), ("base", None),
         ("oracle", ["t0", "t1"] * 4), ("routed", "t1"), ("sum", "t0")]


def loud(lib, scale: float):
    """Give the loaded adapters large random B factors (in memory only), so that every adapter set
    answers differently: a thread that used another call's adapters would then show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in lib.current.lm.lora.layers.values():
            for factors in layer.adapters:
                factors.lora_B.copy_(scale * torch.randn(factors.lora_B.shape, generator=gen))
    return lib


@pytest.mark.parametrize("kind,method,scale", [("bert", "orth", 4.0), ("llama", "olie", 3.0)])
def test_sixteen_threads_get_the_answers_of_serial_calls(kind, method, scale, library_factory):
    lib = loud(load_library(library_factory(kind, method)), scale)
    jobs = [(CALLS[i % len(CALLS)], TEXTS[i % 3:] + TEXTS[:i % 3]) for i in range(16)]
    serial = [lib.predict(texts, mode=mode, task=task) for (mode, task), texts in jobs]
    # the calls really differ, so a thread seeing another's adapters would show
    assert len({tuple(p.prediction for p in answers) for answers in serial}) > 1
    barrier = threading.Barrier(16)

    def call(job):
        (mode, task), texts = job
        barrier.wait(timeout=30)  # all 16 start together
        return [lib.predict(texts, mode=mode, task=task) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(call, jobs))
    for alone, together in zip(serial, concurrent):
        assert all(rounds == alone for rounds in together)


def test_two_predictions_run_their_forward_passes_at_the_same_time(library_factory):
    """Each thread's forward pass waits inside the model for the other's: possible only if neither
    holds a lock the other needs. With a global lock around predict the barrier times out."""
    lib = load_library(library_factory("bert", "orth"))
    model = lib.current.lm.base_model.model
    inside = threading.Barrier(2, timeout=20)
    testing = threading.local()
    met = []

    def meet(module, args):
        if getattr(testing, "on", False):  # only the two test threads, only their first forward pass
            testing.on = False
            inside.wait()
            met.append(threading.get_ident())

    handle = model.embeddings.register_forward_pre_hook(meet)
    try:
        def call(task):
            testing.on = True
            return lib.predict(TEXTS, mode="oracle", task=task)

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(call, ["t0", "t1"]))
    finally:
        handle.remove()
    assert len(set(met)) == 2  # both were inside a forward pass at once
    assert results[0] == lib.predict(TEXTS, mode="oracle", task="t0")
    assert results[1] == lib.predict(TEXTS, mode="oracle", task="t1")


def test_base_models_loaded_in_parallel_threads_all_have_their_weights(tiny_model_dirs):
    """transformers builds a model on the meta device under process-wide state: two loads at once (a server
    loading a new version while auto-promote loads the library) left one with meta tensors. Loads now take
    turns; six threads loading three families get the weights a load alone gets (4 of 6 failed before)."""
    from clora.families.loading import load_base_model

    kinds = ["gpt2", "t5", "bert"] * 2
    alone = {kind: load_base_model(str(tiny_model_dirs[kind])).fingerprint for kind in set(kinds)}
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda kind: load_base_model(str(tiny_model_dirs[kind])), kinds))
    assert [base.fingerprint for base in together] == [alone[kind] for kind in kinds]
    assert not any(p.is_meta for base in together for p in base.model.parameters())
