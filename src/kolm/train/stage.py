"""The `pretrain` stage: pack the curated data, train KolmGPT from scratch, write an HF model dir.

Reads `data/` (curated splits) and `tokenizer/`, packs both splits into token
shards under `pretrain/packed/` (a no-op when already packed with the same
tokenizer and data), builds the model from the `model:` section, trains it with
`kolm.train.loop.train` per the `pretrain:` section (one process, or DDP/FSDP2
under torchrun), and writes `pretrain/final/` (model + tokenizer, loadable with
`AutoModelForCausalLM` after `import kolm.models.registry`), `metrics.jsonl`,
`samples.jsonl` and `summary.md`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kolm.context import StageContext, StageResult
from kolm.errors import ConfigError, DataError, KolmError
from kolm.files import append_jsonl, hash_path, write_json
from kolm.model_config import ModelConfig
from kolm.models.registry import flops_per_token
from kolm.progress import Progress
from kolm.train import distributed as dist
from kolm.train.checkpoint import Checkpointer, model_state, unwrap_model
from kolm.train.config import PretrainConfig
from kolm.train.loop import LoopSettings, TrainState, resolve_precision, train
from kolm.train.metrics import bits_per_char, count_params, peak_flops
from kolm.train.optim import build_adamw
from kolm.train.pack import PackedTokens, WindowSampler, pack_splits
from kolm.train.schedule import build_scheduler

__all__ = [
    "run",
    "pretrain",
    "build_model",
    "grad_accum_steps",
    "make_evaluator",
    "generate_samples",
    "enable_activation_checkpointing",
]


# ----------------------------------------------------------------------------
# Pieces (public so tests, benchmarks and the launcher reuse them)


def build_model(
    model_cfg: ModelConfig, vocab_size: int, bos_id: int | None, eos_id: int | None, pad_id: int | None
) -> nn.Module:
    """KolmGPT from the run config's `model:` section and the tokenizer's vocabulary (initialised on CPU)."""
    from kolm.models.registry import build_causal_lm

    return build_causal_lm(model_cfg, vocab_size, bos_id, eos_id, pad_id)


def grad_accum_steps(tokens_per_step: int, batch_size: int, seq_len: int, world: int) -> int:
    """Micro-batches per optimizer step so that the step sees about `tokens_per_step` tokens (at least 1)."""
    if not tokens_per_step:
        return 1
    return max(1, round(tokens_per_step / (batch_size * seq_len * world)))


def make_evaluator(val: PackedTokens, batch_size: int, max_batches: int, device: str, grad_mode: bool = False):
    """`evaluate(model, step)` -> {"val_loss", "val_bpc"} over the first windows of the validation split.

    The same windows every time (`max_batches * batch_size * world` of them, 0 =
    all), so evaluations compare across steps, runs and process counts; ranks
    score interleaved slices and sum. Bits per character uses the split's
    characters-per-token ratio. `grad_mode=True` evaluates with autograd on
    (graph discarded): under FSDP2 the model's no-grad weight caches can go
    stale, because FSDP2 refills unsharded parameters without bumping their
    version counters.
    """
    world, rank = dist.world_size(), dist.rank()
    n = len(val) if max_batches == 0 else min(len(val), max_batches * batch_size * world)
    n -= n % world  # equal forward passes on every rank (FSDP2 needs them all to take part)
    mine = list(range(rank, n, world))

    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        sums = torch.zeros(2, dtype=torch.float64)  # (sum of per-window mean losses, windows)
        for start in range(0, len(mine), batch_size):
            batch = val.batch(mine[start : start + batch_size])
            with torch.set_grad_enabled(grad_mode):
                out = model(**{k: v.to(device) for k, v in batch.items()})
            size = batch["input_ids"].shape[0]
            sums += torch.tensor([float(out.loss) * size, size], dtype=torch.float64)
        if dist.is_distributed():
            torch.distributed.all_reduce(sums)
        loss = float(sums[0] / sums[1].clamp(min=1))
        return {"val_loss": loss, "val_bpc": bits_per_char(loss, 1, val.chars_per_token)}

    return evaluate


def generate_samples(
    model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, device: str, seed: int = 0
) -> list[dict[str, str]]:
    """Continuations of fixed prompts, sampled as `kolm generate` samples by default (temperature 0.8,
    top-k 50, top-p 0.95, repetition penalty 1.1, fixed seed), through the generation engine.

    The engine draws from its own seeded generator, so the training RNG is left untouched.
    """
    from kolm.infer.generate import SamplingParams, generate

    params = SamplingParams(
        max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1, seed=seed
    )
    done = generate(unwrap_model(model), tokenizer, prompts, params)
    return [{"prompt": p, "completion": c.text or ""} for p, c in zip(prompts, done)]


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in backward: HF's switch when the model has one, else wrap the blocks."""
    if getattr(model, "supports_gradient_checkpointing", False):
        # transformers 5 renamed the switch; keep the old name for older versions.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    blocks = {id(b) for b in dist.transformer_blocks(model)}
    if not blocks:
        raise ConfigError("pretrain.activation_checkpointing: no repeated blocks found in this model; set it to false")
    apply_activation_checkpointing(model, check_fn=lambda m: id(m) in blocks)


def _fingerprint(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def _trim_jsonl(path: Path, max_step: int) -> None:
    """Drop records after `max_step` (left by an interrupted run that is now resumed)."""
    if not path.is_file():
        return
    keep = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln).get("step", 0) <= max_step
    ]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def _sinks(p: PretrainConfig, out: Path, run_name: str) -> list:
    sinks = []
    if p.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise KolmError("pretrain.tensorboard=true needs tensorboard: pip install tensorboard") from exc
        writer = SummaryWriter(str(out / "tensorboard"))
        sinks.append(
            lambda r: (
                [
                    writer.add_scalar(k, v, r["step"])
                    for k, v in r.items()
                    if k != "step" and isinstance(v, (int, float))
                ]
                and writer.flush()
            )
        )
    if p.wandb:
        try:
            import wandb
        except ImportError as exc:
            raise KolmError("pretrain.wandb=true needs wandb: pip install wandb (and `wandb login`)") from exc
        wrun = wandb.init(project=p.wandb_project, name=run_name, dir=str(out))
        sinks.append(lambda r: wrun.log({k: v for k, v in r.items() if k != "step"}, step=r["step"]))
    return sinks


# ----------------------------------------------------------------------------
# The stage


def run(ctx: StageContext) -> StageResult:
    """Stage `pretrain`: record the inputs, call `pretrain` on this run's data and tokenizer."""
    tok_dir, data_dir = ctx.stage_dir("tokenizer"), ctx.stage_dir("data")
    if (tok_dir / "tokenizer.json").is_file():
        ctx.input(tok_dir / "tokenizer.json")
    for split in ("train", "validation"):
        if (data_dir / split).is_dir():
            ctx.input(data_dir / split)  # new data re-runs the stage (and re-packs)
    metrics = pretrain(
        ctx.cfg.model,
        ctx.cfg.pretrain,
        data_dir=data_dir,
        tokenizer_dir=tok_dir,
        out=ctx.out,
        seed=ctx.cfg.seed,
        device=ctx.device,
        progress=ctx.progress,
        run_name=ctx.cfg.name,
    )
    return StageResult(
        outputs={
            "final": ctx.output(ctx.out / "final"),
            "metrics": ctx.output(ctx.out / "metrics.jsonl"),
            "samples": ctx.output(ctx.out / "samples.jsonl"),
        },
        metrics=metrics,
    )


def pretrain(
    model_cfg: ModelConfig,
    p: PretrainConfig,
    *,
    data_dir: Path,
    tokenizer_dir: Path,
    out: Path,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
    run_name: str = "kolm",
) -> dict[str, Any]:
    """Pretrain a model per `model_cfg` (ModelConfig) and `p` (PretrainConfig); return the final metrics.

    Reads the curated splits in `data_dir` and the tokenizer in `tokenizer_dir`,
    writes packed tokens, checkpoints, `final/`, metrics and samples into `out`
    (see the module docstring). Runs in one process, or in every process of a
    `torchrun` launch (DDP/FSDP2 per `p.distributed`). Returns {} on ranks other than 0.
    """
    progress = progress or Progress(enabled=False)
    out = Path(out)
    if p.seq_len > model_cfg.max_seq_len:
        raise ConfigError(
            f"pretrain.seq_len: {p.seq_len} exceeds model.max_seq_len {model_cfg.max_seq_len}; "
            "lower pretrain.seq_len or raise model.max_seq_len"
        )
    device = dist.init_distributed(device)
    is_main, world = dist.is_main(), dist.world_size()

    # -- tokenizer ----------------------------------------------------------------
    tok_dir = Path(tokenizer_dir)
    if not (tok_dir / "tokenizer.json").is_file():
        raise DataError(f"no tokenizer at {tok_dir}; run `kolm tokenizer` first")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    vocab_size = len(tokenizer)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise DataError(f"the tokenizer in {tok_dir} has no EOS token; packing needs one as document separator")

    # -- packing (rank 0; the others wait and read) ---------------------------------
    data_dir = Path(data_dir)
    from kolm.data.io import read_split

    pack_dir = out / "packed"
    if is_main:
        for split in ("train", "validation"):
            if not (data_dir / split).is_dir():
                raise DataError(f"no {split} split in {data_dir}; run `kolm data` first")
        fp = _fingerprint(
            hash_path(tok_dir / "tokenizer.json"), hash_path(data_dir / "train"), hash_path(data_dir / "validation")
        )
        if p.num_proc:
            os.environ.setdefault("RAYON_NUM_THREADS", str(p.num_proc))  # read by the Rust tokenizer pool
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        with progress.task("packing tokens") as task:
            index, packed_now = pack_splits(
                {
                    "train": lambda: read_split(data_dir, "train"),
                    "validation": lambda: read_split(data_dir, "validation"),
                },
                fast,
                pack_dir,
                eos_id,
                fp,
                p.shard_tokens,
                task,
            )
        progress.log(
            ("packed " if packed_now else "packing up to date: ")
            + ", ".join(f"{k} {v['tokens']:,} tokens / {v['docs']:,} docs" for k, v in index["splits"].items())
        )
    dist.barrier()
    train_data = PackedTokens(pack_dir, "train", p.seq_len)
    val_data = PackedTokens(pack_dir, "validation", p.seq_len)

    # -- model, optimizer, schedule --------------------------------------------------
    torch.manual_seed(seed)
    model = build_model(model_cfg, vocab_size, tokenizer.bos_token_id, eos_id, tokenizer.pad_token_id).to(device)
    n_params = count_params(model, exclude_embeddings=False)
    precision = resolve_precision(p.precision, device)
    if p.activation_checkpointing:
        enable_activation_checkpointing(model)
    model = dist.wrap_model(model, p.distributed, device, precision)
    # CPUs: the loop compiles the training forward and asks for the loss alone (the chunked LM-head loss; measured
    # ~1.5x on 2 cores). GPUs: the whole model compiled with full logits, the path measured on an H200 in
    # benchmarks/RESULTS.md; the chunked loss under torch.compile is unmeasured there.
    on_cpu = torch.device(device).type == "cpu"
    if p.compile and not on_cpu:
        model = torch.compile(model)
    optimizer = build_adamw(model, p.lr, p.weight_decay, (p.beta1, p.beta2))
    scheduler = build_scheduler(optimizer, p.schedule, p.warmup_steps, p.max_steps, p.min_lr_ratio, p.decay_fraction)
    accum = grad_accum_steps(p.tokens_per_step, p.batch_size, p.seq_len, world)

    # -- checkpoints / resume ------------------------------------------------------------
    ckpt = Checkpointer(out / "checkpoints", keep_last=p.keep_last, is_main=is_main)
    resume_path = ckpt.resolve(p.resume)
    metrics_path, samples_path = out / "metrics.jsonl", out / "samples.jsonl"
    if is_main:
        start = 0
        if resume_path is not None:
            start = json.loads((resume_path / "trainer.json").read_text(encoding="utf-8")).get("step", 0)
        elif ckpt.steps():  # a fresh start must not mix with an older run's checkpoints; keep them aside
            prev = out / "checkpoints-previous"
            shutil.rmtree(prev, ignore_errors=True)
            os.replace(ckpt.root, prev)
            progress.log(f"starting over (pretrain.resume={p.resume}); older checkpoints moved to {prev}")
        _trim_jsonl(metrics_path, start)
        _trim_jsonl(samples_path, start)
    dist.barrier()

    sampler = WindowSampler(train_data, p.batch_size, seed=seed, rank=dist.rank(), world_size=world)
    settings = LoopSettings(
        max_steps=p.max_steps,
        grad_accum=accum,
        grad_clip=p.grad_clip,
        precision=precision,
        compile=p.compile and on_cpu,
        loss_only=on_cpu,
        log_every=p.log_every,
        eval_every=p.eval_every,
        save_every=p.save_every,
        resume=str(resume_path) if resume_path else "never",
        flops_per_token=flops_per_token(unwrap_model(model).config, p.seq_len),
        peak_flops=peak_flops(device),
    )
    progress.log(
        f"model {n_params / 1e6:.2f}M parameters; {world} process(es) on {device}, {precision}; "
        f"{p.batch_size}x{p.seq_len} tokens x {accum} accumulation x {world} = "
        f"{p.batch_size * p.seq_len * accum * world:,} tokens/step; {len(train_data):,} train windows"
    )

    hooks = []
    if p.sample_every and world == 1:

        def sample_hook(m: nn.Module, state: TrainState) -> None:
            if state.step % p.sample_every == 0 and state.step < p.max_steps:
                for row in generate_samples(m, tokenizer, p.sample_prompts, p.sample_max_new_tokens, device, seed):
                    append_jsonl(samples_path, {"step": state.step, **row})

        hooks.append(sample_hook)
    if hasattr(unwrap_model(model), "update_router_bias"):  # MoE: balance the experts after every optimizer step

        def balance_experts(*_: Any) -> None:
            step = scheduler.last_epoch + 1  # the step just taken (the scheduler moves after the optimizer)
            load = unwrap_model(model).update_router_bias()
            if load and is_main and (step % p.log_every == 0 or step in (1, p.max_steps)):
                # Written just before the loop's record of the same step, which stays the last line.
                append_jsonl(metrics_path, {"step": step, **{k: round(v, 4) for k, v in load.items()}})

        optimizer.register_step_post_hook(balance_experts)

    with progress.task("pretraining", total=p.max_steps) as task:
        state = train(
            model,
            sampler,
            optimizer,
            scheduler,
            settings=settings,
            device=device,
            evaluate=make_evaluator(
                val_data, p.batch_size, p.eval_batches, device, grad_mode=world > 1 and p.distributed == "fsdp"
            ),
            checkpointer=ckpt,
            metrics_path=metrics_path,
            progress=task,
            log=progress.log,
            hooks=hooks,
            sinks=_sinks(p, out, run_name) if is_main else [],
            checkpoint_extra={"config": {"model": _section(model_cfg), "pretrain": _section(p)}},
        )

    # -- final model dir ---------------------------------------------------------------------
    final = out / "final"
    full_state = model_state(model)  # collective under DDP/FSDP2
    metrics: dict[str, Any] = {}
    if is_main:
        final_model = _export(model_cfg, tokenizer, eos_id, full_state, final, device)
        samples = generate_samples(final_model, tokenizer, p.sample_prompts, p.sample_max_new_tokens, device, seed)
        for row in samples:
            append_jsonl(samples_path, {"step": state.step, **row})
        metrics = {
            "steps": state.step,
            "tokens": state.tokens,
            "params": n_params,
            "val_loss": state.last_eval.get("val_loss"),
            "val_bpc": state.last_eval.get("val_bpc"),
            "train_loss": state.loss,
            "train_time_s": round(state.elapsed_s, 1),
            "tok_per_s": round(state.tokens / max(1e-9, state.elapsed_s), 1),
        }
        _write_summary(out / "summary.md", metrics, samples, settings, p, world, device)
        write_json(out / "final_metrics.json", metrics)
    dist.barrier()
    return metrics


def _section(section: Any) -> dict[str, Any]:
    from kolm.sections import to_dict

    return to_dict(section)


def _export(
    model_cfg: ModelConfig, tokenizer: Any, eos_id: int, state: dict[str, torch.Tensor], final: Path, device: str
) -> nn.Module:
    """Write the HF model dir (atomically) and return a fresh single-process model holding the weights."""
    model = build_model(model_cfg, len(tokenizer), tokenizer.bos_token_id, eos_id, tokenizer.pad_token_id)
    model.load_state_dict(state)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return model.to(device)


def _write_summary(
    path: Path,
    m: dict[str, Any],
    samples: list[dict[str, str]],
    settings: LoopSettings,
    p: PretrainConfig,
    world: int,
    device: str,
) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float) and math.isfinite(v):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4f}"
        return str(v)

    lines = [
        "# Pretraining",
        "",
        f"{m['params'] / 1e6:.2f}M parameters, {m['steps']} steps, {m['tokens']:,} tokens, "
        f"{world} process(es) on {device} ({settings.precision}), {m['train_time_s']} s of training.",
        "",
        "| figure | value |",
        "| --- | --- |",
        *[f"| {k} | {fmt(m[k])} |" for k in ("val_loss", "val_bpc", "train_loss", "tok_per_s", "train_time_s")],
        "",
        "Bits per character (`val_bpc`) does not depend on the tokenizer, so runs with different tokenizers "
        "compare on it.",
        "",
        "## Samples",
        "",
        "| prompt | continuation |",
        "| --- | --- |",
    ]
    for row in samples:
        cont = row["completion"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row['prompt']} | {cont} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
