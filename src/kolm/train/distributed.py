"""Multi-process training under `torchrun`: init from its environment, DDP or FSDP2 wrapping, rank-0 helpers.

`torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous address);
without them everything here degrades to one process, so the same stage code
runs under `kolm pretrain` and `torchrun -m kolm.cli.launch`. The backend is
NCCL on CUDA and gloo on CPU (what the test suite uses).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from kolm.errors import ConfigError

__all__ = [
    "init_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
    "local_rank",
    "barrier",
    "mean_across_ranks",
    "wrap_model",
    "transformer_blocks",
    "cleanup",
]


def is_distributed() -> bool:
    """Whether a process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 logs, writes metrics and checkpoints."""
    return rank() == 0


def init_distributed(device: str) -> str:
    """Join the torchrun process group when launched by torchrun; return the device this rank uses."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return device
    if not is_distributed():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank())
        return f"cuda:{local_rank()}"
    return device


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def mean_across_ranks(value: torch.Tensor) -> float:
    """Average a scalar tensor over ranks (a plain float in one process)."""
    if is_distributed():
        value = value.detach().clone()
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        value /= world_size()
    return float(value)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks (the largest ModuleList of the model), the unit FSDP2 shards and checkpointing recomputes."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    # Only the outermost lists: a MoE layer's list of experts can be longer than the list of blocks holding it.
    inner = {id(sub) for outer in lists for child in outer for sub in child.modules() if isinstance(sub, nn.ModuleList)}
    outermost = [m for m in lists if id(m) not in inner]
    return list(max(outermost, key=len)) if outermost else []


def wrap_model(model: nn.Module, strategy: str, device: str, precision: str = "fp32") -> nn.Module:
    """Wrap for data parallelism ("ddp" or "fsdp"); returns the model unchanged in one process.

    FSDP2 shards each block, then the root (embeddings, head), so one block's
    parameters are gathered at a time. Its optimizer must be built after this
    call, on the returned (sharded) parameters.
    """
    if not is_distributed():
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        # A routed expert that no token of a micro-batch chose gets no gradient; DDP must be told to expect that.
        routed = any(hasattr(m, "update_bias") for m in model.modules())
        return DDP(model, device_ids=ids, find_unused_parameters=routed)
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        kwargs: dict[str, Any] = {}
        if precision == "bf16" and device.startswith("cuda"):
            # Parameters gathered in bf16, gradients reduced in fp32: the FSDP2 way of mixed precision.
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in transformer_blocks(model):
            fully_shard(block, **kwargs)
        fully_shard(model, **kwargs)
        return model
    raise ConfigError(f"pretrain.distributed: unknown strategy {strategy!r}; use ddp or fsdp")


def cleanup() -> None:
    """Leave the process group (end of a torchrun job)."""
    if is_distributed():
        torch.distributed.destroy_process_group()
