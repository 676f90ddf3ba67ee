"""Settings of the pretraining stage (`kolm pretrain`).

The batch is described twice on purpose: `batch_size` is what fits in one
forward pass on one device, `tokens_per_step` is what the optimizer sees; the
loop accumulates gradients to bridge them, so a preset means the same
optimisation on 1 CPU or 8 GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["PretrainConfig", "DEFAULT_PROMPTS"]

# Fixed Korean prompts for the sample generations written during training.
DEFAULT_PROMPTS = [
    "대한민국의 수도는",
    "이 영화는 정말",
    "오늘 아침에 나는",
    "인공지능 기술은",
    "옛날 옛적에 한 마을에",
]


@dataclass
class PretrainConfig(Section):
    """The pretraining loop: batch, optimizer, schedule, precision, evaluation, checkpoints, distribution."""

    max_steps: int = option(200, help="optimizer steps", ge=1)
    seq_len: int = option(128, help="tokens per training sequence (<= model.max_seq_len)", ge=8)
    batch_size: int = option(16, help="sequences per micro-batch on one device", ge=1)
    tokens_per_step: int = option(
        0,
        help="tokens per optimizer step across all devices; gradient accumulation fills the gap "
        "(0 = one micro-batch per device)",
        ge=0,
    )
    lr: float = option(3e-3, help="peak learning rate", gt=0)
    min_lr_ratio: float = option(0.1, help="final learning rate as a share of the peak", ge=0.0, le=1.0)
    warmup_steps: int = option(20, help="linear warmup steps", ge=0)
    schedule: str = option(
        "cosine", help="cosine (warmup + cosine decay) or wsd (warmup-stable-decay)", choices=["cosine", "wsd"]
    )
    decay_fraction: float = option(0.2, help="wsd: share of steps spent in the final decay", gt=0.0, le=1.0)
    weight_decay: float = option(0.1, help="AdamW weight decay (matrices only; norms, biases, embeddings exempt)", ge=0)
    beta1: float = option(0.9, help="AdamW beta1", ge=0.0, lt=1.0)
    beta2: float = option(0.95, help="AdamW beta2", ge=0.0, lt=1.0)
    grad_clip: float = option(1.0, help="clip the global gradient norm to this (0 = off)", ge=0.0)
    precision: str = option(
        "auto",
        help="auto (bf16 autocast where the GPU/CPU computes bf16 natively, else fp32), bf16 or fp32",
        choices=["auto", "bf16", "fp32"],
    )
    compile: bool = option(
        False, help="torch.compile the training forward (pays for long runs: the first step compiles)"
    )
    activation_checkpointing: bool = option(False, help="recompute block activations in backward to save memory")
    eval_every: int = option(50, help="validation loss / bits per character every N steps (0 = only at the end)", ge=0)
    eval_batches: int = option(8, help="validation micro-batches per evaluation (0 = the whole split)", ge=0)
    sample_every: int = option(0, help="sample generations every N steps (0 = only at the end)", ge=0)
    sample_prompts: list[str] = option(default_factory=lambda: list(DEFAULT_PROMPTS), help="prompts for samples")
    sample_max_new_tokens: int = option(40, help="new tokens per sample", ge=1)
    log_every: int = option(10, help="write a metrics.jsonl line every N steps", ge=1)
    save_every: int = option(100, help="checkpoint every N steps (0 = only at the end)", ge=0)
    keep_last: int = option(2, help="checkpoints kept besides the best one", ge=1)
    resume: str = option("auto", help="auto (continue from the latest checkpoint), never, or a checkpoint path")
    distributed: str = option(
        "ddp",
        help="strategy under torchrun: ddp or fsdp (FSDP2 fully_shard); ignored in one process",
        choices=["ddp", "fsdp"],
    )
    num_proc: int = option(0, help="tokenizer threads for packing (0 = all cores)", ge=0)
    shard_tokens: int = option(50_000_000, help="tokens per packed shard file", ge=1000)
    tensorboard: bool = option(False, help="also log to TensorBoard (pretrain/tensorboard/)")
    wandb: bool = option(False, help="also log to Weights & Biases (needs `pip install wandb`)")
    wandb_project: str = option("kolm", help="W&B project name")

    def validate(self) -> None:
        if self.warmup_steps >= self.max_steps and self.max_steps > 1:
            raise ConfigError(
                f"pretrain.warmup_steps: {self.warmup_steps} is not below max_steps {self.max_steps}; lower it"
            )
        if self.tokens_per_step and self.tokens_per_step < self.seq_len:
            raise ConfigError(
                f"pretrain.tokens_per_step: {self.tokens_per_step} is below one sequence ({self.seq_len}); "
                "raise it or set 0"
            )
        if self.resume not in ("auto", "never") and not self.resume.strip():
            raise ConfigError("pretrain.resume: use auto, never, or a checkpoint folder path")
