"""Settings of the fine-tuning stage (`kolm finetune`, `kolm finetune compare`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.data.klue import KLUE_TASKS, KlueDataConfig
from kolm.data.tasks import TaskDataConfig
from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["FinetuneConfig", "TaskDataConfig", "METHODS", "TASKS"]

METHODS = ["full", "lora", "dora", "waveft", "ia3", "prompt_tuning", "qlora"]
TASKS = ["classify", "sft", *KLUE_TASKS]


@dataclass
class FinetuneConfig(Section):
    """Which tasks to fine-tune, with which method, on which budget."""

    tasks: list[str] = option(
        ["classify", "sft"],
        help="tasks to run: classify (sentiment/topic), sft (instructions), klue-sts, klue-ner, klue-mrc, klue-re",
        choices=TASKS,
    )
    method: str = option("lora", help="full, lora, dora, waveft, ia3, prompt_tuning, qlora (방법)", choices=METHODS)
    base_model: str | None = option(None, help="model dir to fine-tune; default: this run's pretrain/final")
    classify: TaskDataConfig = option(default_factory=TaskDataConfig, help="classification data")
    sft: TaskDataConfig = option(
        default_factory=lambda: TaskDataConfig(text_field="instruction"), help="instruction data"
    )
    klue: KlueDataConfig = option(default_factory=KlueDataConfig, help="KLUE STS/NER/MRC/RE data (official files)")
    max_steps: int = option(150, help="optimizer steps per task", ge=1)
    epochs: float = option(0.0, help="if > 0, train this many epochs instead of max_steps", ge=0)
    batch_size: int = option(16, help="examples per step", ge=1)
    seq_len: int = option(128, help="maximum tokens per example", ge=8)
    group_by_length: bool = option(
        True, help="batch examples of similar length together (less padding; the order of batches stays random)"
    )
    lr: float | None = option(None, help="learning rate; default depends on the method (see methods.py)", gt=0)
    weight_decay: float = option(0.0, help="AdamW weight decay", ge=0)
    warmup_steps: int = option(10, help="linear warm-up steps", ge=0)
    eval_every: int = option(50, help="evaluate on the validation split every N steps", ge=1)
    patience: int = option(0, help="early stopping: evaluations without improvement before stopping (0 = off)", ge=0)
    lora_r: int = option(8, help="LoRA/DoRA rank", ge=1)
    lora_alpha: int = option(16, help="LoRA/DoRA scaling alpha", ge=1)
    lora_dropout: float = option(0.05, help="LoRA/DoRA dropout", ge=0, lt=1)
    target_modules: list[str] = option(
        ["all-linear"], help="modules to adapt: all-linear or names such as q_proj, v_proj"
    )
    waveft_n_frequency: int = option(256, help="WaveFT: learnable wavelet coefficients per layer", ge=1)
    waveft_scaling: float = option(25.0, help="WaveFT: scaling of the reconstructed update", gt=0)
    prompt_tokens: int = option(16, help="prompt tuning: number of virtual tokens", ge=1)
    compare_methods: list[str] = option(
        ["full", "lora", "dora", "waveft", "ia3", "prompt_tuning"],
        help="methods run by `kolm finetune compare` on the classification task",
        choices=METHODS,
    )
    device: str | None = option(None, help="device override (default: the run's device)")

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("finetune.tasks: list at least one task (classify, sft)")
        for name in ("classify", "sft"):
            data: TaskDataConfig = getattr(self, name)
            if data.kind != "embedded" and not data.train:
                raise ConfigError(f"finetune.{name}.train: kind={data.kind} needs a training file path")
        for task in self.tasks:
            if task in KLUE_TASKS and self.klue.files(task, "train") is None:
                short = task.removeprefix("klue-")
                raise ConfigError(
                    f"finetune.klue: {task} needs its data: set finetune.klue.dir (the official KLUE files) "
                    f"or finetune.klue.{short}.train"
                )
