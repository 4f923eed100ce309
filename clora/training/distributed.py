"""Data-parallel training over several processes, set up by Hugging Face Accelerate.

``accelerate launch --num_processes N $(which clora) run ...`` starts N copies of an
unchanged command. Accelerate's ``PartialState`` reads the launcher's environment and
opens the process group (NCCL on GPUs, gloo on CPUs). Each training batch is then split
into N contiguous shares, every process computes the gradient of its share and one
all-reduce sums them, weighted so that the step equals the single-process step on the
whole batch (as DDP does, but exact also for a last batch that does not split evenly).
Every process keeps the same adapters; only the main process writes files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch


def launched_world_size() -> int:
    """Processes the launcher started (``WORLD_SIZE``; 1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Workers:
    """This process's place among the processes of one run: ``rank`` of ``size``."""

    def __init__(self, device: str = "cpu"):
        self.size = launched_world_size()
        self.rank = 0
        if self.size > 1:
            from accelerate import PartialState

            state = PartialState(cpu=device == "cpu")
            self.size, self.rank = state.num_processes, state.process_index

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch: Sequence) -> list:
        """This process's contiguous part of ``batch`` (parts differ by at most one; may be empty)."""
        base, extra = divmod(len(batch), self.size)
        start = self.rank * base + min(self.rank, extra)
        return list(batch[start:start + base + (1 if self.rank < extra else 0)])

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients of ``params`` in one flat buffer; no-op alone."""
        if self.size == 1:
            return
        from accelerate.utils import reduce

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="sum")
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def sum(self, value: float) -> float:
        """The sum of a number over the processes."""
        if self.size == 1:
            return value
        from accelerate.utils import reduce

        return float(reduce(torch.tensor([value], dtype=torch.float64), reduction="sum"))

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()
