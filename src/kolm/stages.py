"""The stage table: the one list the CLI, the pipeline and the report read.

Each stage is a function `run(ctx: StageContext) -> StageResult` in its own
module (see `kolm.context`), named here by import path so that listing stages
imports nothing heavy. The function is a thin view of a typed core function
of the same module that the Python API can call directly.
Stages run in the order of this table. `actions` are extra sub-commands of a
stage (`kolm tokenizer compare`), each also a `run(ctx)` function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Stage", "STAGES", "get_stage"]


@dataclass(frozen=True)
class Stage:
    """One step of the workshop chain."""

    name: str  # CLI command and pipeline key
    week: int  # workshop week it belongs to
    help: str  # one line, English with the Korean key term
    entry: str  # "module:function" running the stage
    dir: str  # output folder inside the run directory
    sections: tuple[str, ...]  # config sections whose change re-runs the stage
    produces: str  # what it writes, for the README/help table
    actions: dict[str, str] = field(default_factory=dict)  # sub-command -> "module:function"
    resumable: bool = False  # an interrupted run's staging folder is kept and resumed (checkpoints)
    linked: tuple[str, ...] = ()  # subfolders written only as new files: hard-linked, not copied, into staging


STAGES: tuple[Stage, ...] = (
    Stage(
        name="data",
        week=2,
        help="Collect and clean Korean text (데이터 수집·정제): normalize, filter, PII, dedup",
        entry="kolm.data.curate:run",
        dir="data",
        sections=("data",),
        produces="Parquet shards, curation_report.{json,md}",
    ),
    Stage(
        name="tokenizer",
        week=3,
        help="Train and compare tokenizers (토크나이저 학습·비교)",
        entry="kolm.tokenizer.stage:run",
        dir="tokenizer",
        sections=("tokenizer",),
        produces="tokenizer.json (AutoTokenizer), stats.json, compare.md",
        actions={"train": "kolm.tokenizer.stage:run", "compare": "kolm.tokenizer.stage:run_compare"},
    ),
    Stage(
        name="pretrain",
        week=5,
        help="Pretrain a Llama-style GPT from scratch (사전학습), CPU to many GPUs",
        entry="kolm.train.stage:run",
        dir="pretrain",
        sections=("model", "pretrain"),
        produces="checkpoints/, final/ (HF model dir), metrics.jsonl",
        resumable=True,
        linked=("packed", "checkpoints", "checkpoints-previous"),
    ),
    Stage(
        name="finetune",
        week=6,
        help="Fine-tune with full or PEFT methods (미세조정: LoRA, DoRA, WaveFT, IA3, ...)",
        entry="kolm.finetune.stage:run",
        dir="finetune",
        sections=("finetune",),
        produces="adapters / model dirs per task, metrics.jsonl, eval.json",
        actions={"compare": "kolm.finetune.compare:run"},
    ),
    Stage(
        name="align",
        week=9,
        help="Align (정렬): reward model, DPO, PPO, GRPO; positive rate and reward before and after",
        entry="kolm.align.stage:run",
        dir="align",
        sections=("align",),
        produces="align/<method>/ (model or adapter), metrics.jsonl, eval.json, samples.jsonl",
        actions={"compare": "kolm.align.compare:run"},
    ),
    Stage(
        name="eval",
        week=7,
        help="Evaluate (평가): perplexity, classification, few-shot, BLEU/ROUGE, LLM-as-judge",
        entry="kolm.evaluate.stage:run",
        dir="eval",
        sections=("eval",),
        produces="eval.json, eval.md, samples.jsonl",
    ),
    Stage(
        name="package",
        week=8,
        help="Export and quantize (내보내기·양자화): hf-llama, GGUF, ONNX, and what each form costs",
        entry="kolm.export.stage:run",
        dir="export",
        sections=("export",),
        produces="export/<format>/ (with model cards), export/quant/quant.{json,md}",
    ),
)


def get_stage(name: str) -> Stage:
    """The stage called `name`."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)
