"""Data-parallel training under torchrun: each rank trains on its slice of every global batch.

`torchrun --nproc_per_node K -m namesae train ...` starts K processes with RANK / WORLD_SIZE / LOCAL_RANK set;
`train_sae` then joins the process group (gloo on CPU, nccl on CUDA, one GPU per local rank). Every rank reads
the same deterministic stream of global batches (a pure function of seed and position, see `data.StoreStream`)
and keeps rows [rank * B/K, (rank + 1) * B/K) of each: its own share, fixed by its rank. The fused step computes
the gradient of its share's mean loss; the ranks average the gradients and sum the feature-firing counts with
one all-reduce each, so clipping, Adam and the dead-feature state are identical on every rank and equal to
one process on the global batch, up to float rounding. Rank 0 alone writes checkpoints, state and the final SAE;
a rerun of the same torchrun command after any rank was killed resumes from the last state.

Only steps whose loss is a mean over rows split this way: TopK and JumpReLU (fused). BatchTopK and Matryoshka
select over the whole batch, and SAELens's own step has no hook for the reduction; both are refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from namesae.errors import ConfigError

log = logging.getLogger(__name__)

DDP_ARCHITECTURES = ("topk", "jumprelu")


@dataclass
class Distributed:
    """This process's place in a data-parallel run (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this rank writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, config: Any) -> Distributed:
        """Join torchrun's process group when WORLD_SIZE > 1 (once per process); else a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as dist

        if config.engine != "fast" or config.architecture not in DDP_ARCHITECTURES:
            raise ConfigError(f"data-parallel training (WORLD_SIZE={world}) needs engine = \"fast\" and an "
                              f"architecture in {list(DDP_ARCHITECTURES)}, got engine {config.engine!r}, "
                              f"architecture {config.architecture!r}")
        if config.batch_size % world:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {world} ranks")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
            if cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)

    def device(self, device: str) -> str:
        """One GPU per local rank."""
        if self.world > 1 and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def shard(self, batch: Any) -> Any:
        """This rank's rows of a global batch."""
        if self.world == 1:
            return batch
        size = batch.shape[0] // self.world
        return batch[self.rank * size:(self.rank + 1) * size]

    def wrap_step(self, step_fn: Any, config: Any) -> Any:
        """Hand the step this rank's reductions (the fused steps call them; see `reduce_grads`)."""
        if self.world > 1:
            step_fn.dist = self
        return step_fn

    def reduce_grads(self, grads: dict[str, Any]) -> dict[str, Any]:
        """Average gradients over ranks (one flat all-reduce)."""
        import torch
        import torch.distributed as dist

        names = list(grads)
        flat = torch.cat([grads[n].reshape(-1).float() for n in names])
        dist.all_reduce(flat)
        flat /= self.world
        out, start = {}, 0
        for n in names:
            g = grads[n]
            out[n] = flat[start:start + g.numel()].view(g.shape).to(g.dtype)
            start += g.numel()
        return out

    def reduce_sum(self, tensor: Any) -> Any:
        """Sum a tensor over ranks, in place."""
        import torch.distributed as dist

        dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
