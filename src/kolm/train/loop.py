"""The training loop shared by pretraining and fine-tuning.

`train(model, batches, optimizer, ...)` works for any model whose forward takes
the batch dict as keyword arguments and returns an object with `.loss`
(Hugging Face causal LMs, sequence classifiers, PEFT-wrapped models). It does:
gradient accumulation (DDP/FSDP2 gradient sync only on the last micro-batch),
bf16 autocast or fp32, gradient clipping, a NaN/inf guard that stops before
the optimizer step (so the last checkpoint stays good), an evaluation callback
with best-checkpoint tracking, early stopping and keeping the best weights
(both off unless asked for), periodic atomic checkpoints with exact resume
(model, optimizer, scheduler, RNG, data position), a progress line and
`metrics.jsonl`. Optionally the training forward is compiled (`compile`, with
a fallback to eager where torch.compile does not work) and the model is asked
for the loss alone (`loss_only`: KolmGPT then never materialises the logits).
Everything model- or task-specific stays with the caller.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.autograd.graph import increment_version

from kolm.errors import KolmError
from kolm.train import distributed as dist_utils
from kolm.train.checkpoint import Checkpointer
from kolm.train.metrics import mfu, peak_memory_mb

__all__ = [
    "LoopSettings",
    "TrainState",
    "TrainingDiverged",
    "train",
    "autocast_context",
    "resolve_precision",
    "compiled_or_plain",
]


class TrainingDiverged(KolmError):
    """The loss became NaN or infinite."""


@dataclass
class LoopSettings:
    """How the loop runs (the caller maps its config section onto this)."""

    max_steps: int
    grad_accum: int = 1
    grad_clip: float = 1.0  # 0 = off
    precision: str = "fp32"  # "bf16" (autocast) or "fp32"; see resolve_precision()
    compile: bool = False  # torch.compile the training forward (evaluation, hooks and checkpoints see the plain model)
    loss_only: bool = False  # ask the model for the loss alone (`skip_logits=True`: KolmGPT's chunked LM-head loss)
    log_every: int = 10
    eval_every: int = 0  # 0 = only after the last step
    save_every: int = 0  # 0 = only after the last step
    resume: str | None = "auto"  # "auto", "never"/None, or a checkpoint folder
    best_metric: str = "val_loss"  # key of the evaluate() dict that picks the best checkpoint
    lower_is_better: bool = True
    patience: int = 0  # stop after this many evaluations in a row without a better best_metric (0 = never)
    keep_best: bool = False  # at the end, put back the trainable weights of the best evaluation (in memory)
    flops_per_token: float | None = None  # for MFU
    peak_flops: float | None = None  # of one device; None = no MFU


@dataclass
class TrainState:
    """Counters carried across steps and checkpoints."""

    step: int = 0
    tokens: int = 0  # across all ranks
    best_metric: float | None = None
    best_step: int | None = None
    best_eval: dict[str, float] = field(default_factory=dict)  # the evaluate() dict of the best evaluation
    evals_since_best: int = 0  # evaluations since best_metric last improved (early stopping)
    loss: float = float("nan")
    elapsed_s: float = 0.0
    last_eval: dict[str, float] = field(default_factory=dict)


def resolve_precision(precision: str, device: str) -> str:
    """ "auto" -> "bf16" where the hardware computes in bf16 natively, else "fp32"; explicit values pass through.

    CUDA: when the GPU supports bf16. CPU: when it has AVX512-BF16 or AMX, where
    bf16 autocast measured about 2x faster than fp32 for the small preset; on
    other CPUs bf16 is emulated and slower, so fp32.
    """
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if any(getattr(torch.cpu, name, lambda: False)() for name in probes):
            return "bf16"
    return "fp32"


def autocast_context(precision: str, device: str):
    """bf16 autocast for `precision == "bf16"` (CPU and CUDA), else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compiled_or_plain(model: nn.Module, log: Callable[[str], None] = lambda _msg: None) -> nn.Module:
    """`torch.compile(model)` sharing its parameters, or `model` itself where compilation does not work here.

    A tiny function with a backward is compiled first: without a C++
    compiler (CPU) or Triton (GPU) that fails in seconds, instead of at the
    first training step.
    """
    try:
        probe = torch.compile(lambda t: (t.sin() * 2).sum())
        probe(torch.ones(8, requires_grad=True)).backward()
    except Exception as e:  # noqa: BLE001 - any failure means: train eagerly
        log(f"torch.compile is unavailable here ({type(e).__name__}: {str(e).splitlines()[0][:120]}); training eagerly")
        return model
    return torch.compile(model)


def _to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _count_tokens(batch: dict[str, Any]) -> int:
    if "attention_mask" in batch and torch.is_tensor(batch["attention_mask"]):
        return int(batch["attention_mask"].sum())
    if "input_ids" in batch:
        return int(batch["input_ids"].numel())
    first = next((v for v in batch.values() if torch.is_tensor(v)), None)  # non-text models: count examples
    return int(first.shape[0]) if first is not None and first.dim() else 1


def _grad_sync(model: nn.Module, enabled: bool):
    """Skip gradient all-reduce on accumulation micro-steps (DDP no_sync / FSDP2 requires_gradient_sync)."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()
    if not enabled and hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    return contextlib.nullcontext()


def train(
    model: nn.Module,
    batches: Iterator[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    *,
    settings: LoopSettings,
    device: str = "cpu",
    evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
    checkpointer: Checkpointer | None = None,
    metrics_path: str | Path | None = None,
    progress: Any = None,
    log: Callable[[str], None] | None = None,
    hooks: list[Callable[[nn.Module, TrainState], None]] | None = None,
    sinks: list[Callable[[dict[str, Any]], None]] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> TrainState:
    """Train until `settings.max_steps` optimizer steps; resume from a checkpoint first when there is one.

    `batches` yields dicts of tensors passed as `model(**batch)`; if it has
    `state_dict()/load_state_dict()` its position is checkpointed. `evaluate
    (model, step)` returns metrics (e.g. {"val_loss": ...}) and runs every
    `eval_every` steps and at the end, in eval mode, under no_grad and autocast.
    `hooks(model, state)` run after every step (e.g. sample generations).
    `sinks(record)` receive every metrics record (TensorBoard, W&B).
    `progress` is anything with `.update(completed=, total=, info=)` (e.g. `ctx.task(...)`).

    Early stopping (`settings.patience`) ends training after that many
    evaluations in a row that did not improve `best_metric` (a missing value
    does not count; a NaN counts as no improvement). `settings.keep_best`
    snapshots the trainable parameters at every new best and restores them
    when training ends, so the model leaves the loop with its best weights;
    the snapshot lives in memory and does not survive a resume.
    Returns the final TrainState. Raises TrainingDiverged on a NaN/inf loss.
    """
    log = log or (lambda _msg: None)
    is_main = dist_utils.is_main()
    world = dist_utils.world_size()
    state = TrainState()
    ckpt_extra = dict(checkpoint_extra or {})

    # -- resume ------------------------------------------------------------------
    if checkpointer is not None:
        path = checkpointer.resolve(settings.resume)
        if path is not None:
            info = checkpointer.load(path, model, optimizer, scheduler)
            saved = info.get("state", {})
            state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
            if info.get("data") is not None and hasattr(batches, "load_state_dict"):
                batches.load_state_dict(info["data"])
            if scheduler is not None and hasattr(scheduler, "lr_lambdas"):
                # A run extended to more steps has a new schedule; apply it from the saved step on.
                for group, base, f in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                    group["lr"] = base * f(scheduler.last_epoch)
            log(f"resumed from {path} at step {state.step}")

    def save(metric: float | None = None) -> Path | None:
        if checkpointer is None:
            return None
        trainer = {
            "state": asdict(state),
            "data": batches.state_dict() if hasattr(batches, "state_dict") else None,
            **ckpt_extra,
        }
        return checkpointer.save(
            state.step, model, optimizer, scheduler, trainer, metric=metric, lower_is_better=settings.lower_is_better
        )

    def emit(record: dict[str, Any]) -> None:
        if not is_main:
            return
        if metrics_path is not None:
            from kolm.files import append_jsonl

            append_jsonl(Path(metrics_path), record)
        for sink in sinks or []:
            sink(record)

    def run_eval() -> tuple[dict[str, float], bool]:
        """Evaluate; track the best value of `best_metric`. Returns (metrics, whether it improved)."""
        model.eval()
        with torch.no_grad(), autocast_context(settings.precision, device):
            metrics = evaluate(model, state.step) if evaluate is not None else {}
        model.train()
        state.last_eval = dict(metrics)
        value = metrics.get(settings.best_metric)
        if value is None:
            return metrics, False
        better = math.isfinite(value) and (
            state.best_metric is None
            or (value < state.best_metric if settings.lower_is_better else value > state.best_metric)
        )
        if better:
            state.best_metric, state.best_step = float(value), state.step
            state.best_eval, state.evals_since_best = dict(metrics), 0
        else:
            state.evals_since_best += 1
        return metrics, better

    params = [p for g in optimizer.param_groups for p in g["params"]]
    fused = any(g.get("fused") for g in optimizer.param_groups)
    # The training forward may be compiled; evaluation, hooks and checkpoints keep the plain module, whose
    # parameters are the same tensors (a compiled generation would recompile at every new cache length).
    forward = compiled_or_plain(model, log) if settings.compile else model
    extra = {"skip_logits": True} if settings.loss_only else {}
    model.train()
    if state.step >= settings.max_steps:
        log(f"already at step {state.step} of {settings.max_steps}; nothing to train")
    window_tokens, window_start = 0, time.perf_counter()
    best_weights: dict[str, torch.Tensor] = {}  # trainable parameters at the best evaluation (keep_best)
    start_elapsed, start_time = state.elapsed_s, time.perf_counter()

    while state.step < settings.max_steps:
        # -- one optimizer step: accumulate grad_accum micro-batches ---------------
        loss_sum = torch.zeros((), device=device)
        step_tokens = 0
        for micro in range(settings.grad_accum):
            batch = _to_device(next(batches), device)
            step_tokens += _count_tokens(batch)
            with _grad_sync(model, micro == settings.grad_accum - 1):
                with autocast_context(settings.precision, device):
                    try:
                        out = forward(**batch, **extra)
                    except Exception as e:  # noqa: BLE001
                        if forward is model or state.step > 0:
                            raise
                        log(f"torch.compile failed ({type(e).__name__}); training eagerly")
                        forward = model
                        out = model(**batch, **extra)
                loss = out.loss / settings.grad_accum  # mean over micro-batches, like one big batch
                loss.backward()
            loss_sum += loss.detach().float()
        loss_value = dist_utils.mean_across_ranks(loss_sum)
        if not math.isfinite(loss_value):
            last = checkpointer.latest() if checkpointer is not None else None
            optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"loss became {loss_value} at step {state.step + 1}; stopped before updating the weights. "
                + (f"The last good checkpoint is {last}. " if last else "")
                + "Lower the learning rate (pretrain.lr), enable gradient clipping, or use precision=fp32."
            )
        grad_norm = None
        if settings.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used (the scheduler moves it next)
        optimizer.step()
        if fused:
            # Fused kernels update weights without bumping autograd version counters; anything keyed on
            # them (no-grad weight caches in the model) would keep serving the old weights.
            increment_version(params)
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        tokens = step_tokens * world
        state.step += 1
        state.tokens += tokens
        state.loss = loss_value
        state.elapsed_s = start_elapsed + time.perf_counter() - start_time
        window_tokens += tokens

        # -- logging -------------------------------------------------------------
        last_step = state.step == settings.max_steps
        record: dict[str, Any] = {}
        if state.step % settings.log_every == 0 or last_step or state.step == 1:
            now = time.perf_counter()
            tok_s = window_tokens / max(1e-9, now - window_start)
            window_tokens, window_start = 0, now
            record = {
                "step": state.step,
                "loss": round(loss_value, 6),
                "lr": lr,
                "tok_per_s": round(tok_s, 1),
                "tokens": state.tokens,
                "elapsed_s": round(state.elapsed_s, 2),
                "peak_mem_mb": round(peak_memory_mb(device), 1),
            }
            if grad_norm is not None:
                record["grad_norm"] = round(grad_norm, 4)
            u = mfu(tok_s, settings.flops_per_token or 0.0, settings.peak_flops, world)
            if u is not None:
                record["mfu"] = round(u, 4)
        if progress is not None:
            progress.update(
                completed=state.step,
                total=settings.max_steps,
                info=f"loss {loss_value:.3f} lr {lr:.2e}"
                + (f" {record['tok_per_s']:.0f} tok/s" if "tok_per_s" in record else ""),
            )

        # -- evaluation and checkpoints -------------------------------------------
        metric = None
        if (settings.eval_every and state.step % settings.eval_every == 0) or last_step:
            if evaluate is not None:
                ev, improved = run_eval()
                if improved and settings.keep_best:
                    best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                record = {**record, "step": state.step, **{k: round(v, 6) for k, v in ev.items()}}
                metric = ev.get(settings.best_metric)
                log(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in ev.items()))
        if record:
            emit(record)
        for hook in hooks or []:
            hook(model, state)
        if (settings.save_every and state.step % settings.save_every == 0) or last_step:
            save(metric)
        if settings.patience and state.evals_since_best >= settings.patience:
            log(
                f"early stop at step {state.step}: {settings.best_metric} did not improve in {settings.patience} "
                f"evaluations (best {state.best_metric} at step {state.best_step})"
            )
            break
    if best_weights and state.best_step != state.step:
        params_by_name = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in best_weights.items():
                params_by_name[name].copy_(value)
    return state
