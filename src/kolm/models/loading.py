"""The one loader: a model dir, any HF model dir, a run dir or a PEFT adapter dir -> (model, tokenizer).

Every part of kolm that reads a model (generation, chat, eval, fine-tuning,
merge, export, and next the server and alignment) calls `load_model`, so there
is one contract and one set of error messages:

    model, tokenizer = load_model("runs/tiny", device="cpu")                 # the run's pretrain/final
    model, tokenizer = load_model("runs/tiny/finetune/classify", task="classify")
    model, tokenizer = load_model("path/to/adapter", merge=True)             # LoRA folded into the weights

What a path may be (`find_model_dir`):
* a model dir (`config.json`): kolm's own or any Hugging Face model;
* a PEFT adapter dir (`adapter_config.json`);
* a fine-tuning task dir (`finetune/<task>/` holding `model/` or `adapter/`);
* a run dir (`runs/<name>/`, its `pretrain/final/`).

An adapter's base model is found one documented way (`adapter_base`): an
explicit `base_model` argument (`--base-model`), else the path recorded by
kolm in `kolm_task.json` (relative to the adapter dir, then absolute), else
PEFT's `base_model_name_or_path` (absolute, relative to the adapter dir, or
relative to the working directory, in that order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kolm.errors import CheckpointError, KolmError

__all__ = [
    "load_model",
    "load_tokenizer",
    "find_model_dir",
    "adapter_base",
    "task_info",
    "write_task_info",
    "parse_dtype",
    "is_adapter",
    "TASKS",
]

TASKS = ("causal-lm", "classify", "token-classify", "span-qa")
_HEAD_KINDS = {"token-classify": "token", "span-qa": "span"}  # tasks served by `task_heads.TaskHeadModel`
TASK_FILE = "kolm_task.json"
_PROMPT_ADAPTERS = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING")
DTYPES = {
    "auto": None,
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
}


def parse_dtype(name: str | None) -> Any:
    """torch dtype from a short name (fp32, bf16, fp16); None or "auto" keep the checkpoint's own."""
    import torch

    if name is None or name == "auto":
        return None
    if name not in DTYPES:
        raise KolmError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def is_adapter(path: str | Path) -> bool:
    """Whether `path` is a PEFT adapter folder."""
    return (Path(path) / "adapter_config.json").is_file()


def find_model_dir(path: str | Path) -> Path:
    """The model or adapter dir meant by `path` (model dir, adapter dir, fine-tuning task dir or run dir)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a model dir such as runs/<name>/pretrain/final")
    for candidate in (path, path / "model", path / "adapter", path / "pretrain" / "final"):
        if (candidate / "config.json").is_file() or is_adapter(candidate):
            return candidate
    raise CheckpointError(
        f"no model in {path} (no config.json or adapter_config.json); "
        "pass runs/<name>/pretrain/final, a fine-tuned model folder or an adapter folder"
    )


def task_info(model_dir: str | Path) -> dict[str, Any]:
    """What kolm recorded about a fine-tuned model or adapter (`kolm_task.json`), or {}."""
    path = Path(model_dir) / TASK_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-run the fine-tuning or delete the file") from None


def write_task_info(
    model_dir: str | Path,
    task: str,
    method: str,
    labels: list[str],
    base_model: str | Path | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Record task, method, labels and base model next to a fine-tuned model, findable from anywhere.

    The base is stored both relative to `model_dir` (survives moving the whole
    run dir) and absolute (survives moving the adapter alone). `extra` adds
    what scoring the model again needs (e.g. the input length it was trained with).
    """
    from kolm.files import write_json

    model_dir = Path(model_dir)
    info: dict[str, Any] = {"task": task, "method": method, "labels": list(labels), **(extra or {})}
    if base_model is not None:
        base = Path(base_model).resolve()
        info["base_model"] = str(base)
        info["base_model_relative"] = os.path.relpath(base, model_dir.resolve())
    write_json(model_dir / TASK_FILE, info)


def adapter_base(adapter_dir: str | Path, base_model: str | Path | None = None) -> Path:
    """The base model dir of an adapter, found the one documented way (see the module docstring)."""
    adapter_dir = Path(adapter_dir)
    if base_model is not None:
        base = Path(base_model)
        if not (base / "config.json").is_file():
            raise CheckpointError(f"--base-model {base} is not a model dir (no config.json)")
        return base
    info = task_info(adapter_dir)
    tried: list[str] = []
    candidates: list[Path] = []
    if info.get("base_model_relative"):
        candidates.append(adapter_dir / info["base_model_relative"])
    if info.get("base_model"):
        candidates.append(Path(info["base_model"]))
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError):
        recorded = None
    if recorded:
        candidates += [Path(recorded), adapter_dir / recorded]
    for c in candidates:
        tried.append(str(c))
        if (c / "config.json").is_file():
            return c.resolve() if not c.is_absolute() else c
    raise CheckpointError(
        f"the base model of the adapter {adapter_dir} was not found (tried {tried or 'nothing recorded'}); "
        "pass --base-model DIR"
    )


def load_model(
    path: str | Path,
    *,
    task: str = "causal-lm",
    device: str = "cpu",
    dtype: str | Any | None = None,
    base_model: str | Path | None = None,
    merge: bool = False,
    labels: list[str] | None = None,
    pad_token_id: int | None = None,
    quant: str | None = None,
) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer) for the model at `path`.

    task: "causal-lm" (next-token head), "classify" (sequence classifier;
    label names from `labels`, else from the model's `kolm_task.json`, else
    its config; one label makes it a regression), "token-classify" (a tag per
    token) or "span-qa" (answer start/end per token); the last two wrap the
    causal LM in `kolm.models.task_heads.TaskHeadModel`, with the head's
    weights from `task_head.safetensors` when the dir has them. An adapter dir loads as a `PeftModel` over its base;
    `merge=True` folds LoRA/DoRA/IA3 updates into the weights (what the
    generation engine wants). `dtype`: "fp32", "bf16", "fp16", a torch dtype,
    or None for the checkpoint's own. `quant` (`kolm.models.quant.QUANTS`):
    "int8" (CPU dynamic int8, inference only), "int8-wo" (CPU int8 weights
    only, inference only), "bf16", or on CUDA "nf4" /
    "llm-int8" (bitsandbytes; the model is placed on `device` while loading).
    """
    if task not in TASKS:
        raise KolmError(f"unknown model task {task!r}; choose one of {', '.join(TASKS)}")
    import kolm.models  # noqa: F401  (registers kolm architectures with transformers' Auto classes)
    from kolm.models.quant import apply_cpu_quant, bnb_config, check_quant

    check_quant(quant, device)
    model_dir = find_model_dir(path)
    if quant == "bf16":
        dtype = "bf16"
    if quant in ("int8", "int8-wo") and merge is False and is_adapter(model_dir):
        merge = True  # int8 layers cannot host an adapter: fold it in first
    torch_dtype = parse_dtype(dtype) if isinstance(dtype, str) or dtype is None else dtype
    quantization = bnb_config(quant) if quant in ("nf4", "llm-int8") else None
    info = task_info(model_dir)
    labels = list(labels) if labels else list(info.get("labels") or [])
    if is_adapter(model_dir):
        base = adapter_base(model_dir, base_model)
        model = _load_adapter(model_dir, base, task, labels, torch_dtype, merge, pad_token_id, quantization, device)
        tok_dir = model_dir if (model_dir / "tokenizer_config.json").is_file() else base
    else:
        model = _from_pretrained(model_dir, task, labels, torch_dtype, pad_token_id, quantization, device)
        tok_dir = model_dir
    tokenizer = load_tokenizer(tok_dir)
    if (
        task == "classify"
        and getattr(model.config, "pad_token_id", None) is None
        and tokenizer.pad_token_id is not None
    ):
        model.config.pad_token_id = tokenizer.pad_token_id
    if quantization is not None:
        return model.eval(), tokenizer  # bitsandbytes placed it on `device`; quantized weights refuse .to()
    model = model.to(device).eval()
    return apply_cpu_quant(model, quant), tokenizer


def load_tokenizer(path: str | Path) -> Any:
    """`AutoTokenizer.from_pretrained(path)` with a clear error when the folder has no tokenizer."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not ((path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()):
        raise CheckpointError(f"no tokenizer files in {path}; copy the run's tokenizer/ files next to the model")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the tokenizer in {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _auto_class(task: str) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task == "classify" else AutoModelForCausalLM


def _from_pretrained(
    model_dir: Path,
    task: str,
    labels: list[str],
    dtype: Any,
    pad_token_id: int | None,
    quantization: Any = None,
    device: str = "cpu",
) -> Any:
    """`Auto*.from_pretrained` with the head's label settings, turning unreadable files into one-line errors.

    `quantization`: a `BitsAndBytesConfig`; the weights are then quantized while loading onto `device`.
    """
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": device})
    if task == "classify" and labels:
        kwargs.update(
            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)}
        )
    if task == "classify" and pad_token_id is not None:
        kwargs["pad_token_id"] = pad_token_id
    try:
        model = _auto_class(task).from_pretrained(str(model_dir), **kwargs)
    except Exception as exc:  # noqa: BLE001 - every unreadable checkpoint becomes one line naming the file
        raise CheckpointError(_describe_load_error(model_dir, exc)) from exc
    if task in _HEAD_KINDS:
        from kolm.models.task_heads import HEAD_FILE, TaskHeadModel

        if task == "token-classify" and not labels:
            raise KolmError(f"a token classifier needs its tag names; {model_dir} records none (kolm_task.json)")
        model = TaskHeadModel(model, _HEAD_KINDS[task], num_labels=len(labels) or 2)
        if (model_dir / HEAD_FILE).is_file():
            try:
                model.load_head(model_dir)
            except Exception as exc:  # noqa: BLE001 - a head of another task or a corrupt file: one line
                raise CheckpointError(f"cannot load {model_dir / HEAD_FILE}: {_first_line(exc)}") from None
    return model


def _describe_load_error(model_dir: Path, exc: BaseException) -> str:
    name = type(exc).__name__
    weights = next((p for p in (model_dir / "model.safetensors", model_dir / "pytorch_model.bin") if p.exists()), None)
    if "Safetensor" in name or "safetensors" in str(exc).lower() or "header" in str(exc).lower():
        where = weights or model_dir / "model.safetensors"
        return f"{where} is truncated or corrupt ({name}: {_first_line(exc)}); re-export or re-train the model"
    if isinstance(exc, (ValueError, KeyError)) and "model type" in str(exc).lower():
        return f"{model_dir}/config.json names a model type this transformers does not know ({_first_line(exc)})"
    return f"cannot load the model in {model_dir} ({name}: {_first_line(exc)})"


def _load_adapter(
    adapter_dir: Path,
    base: Path,
    task: str,
    labels: list[str],
    dtype: Any,
    merge: bool,
    pad_token_id: int | None,
    quantization: Any = None,
    device: str = "cpu",
) -> Any:
    """Base model + adapter as a PeftModel (or merged into plain weights); checks the adapter fits the base."""
    from peft import PeftModel

    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{adapter_dir}/adapter_config.json is not valid JSON ({exc})") from None
    if merge and cfg.get("peft_type") in _PROMPT_ADAPTERS:
        raise KolmError(
            f"{adapter_dir} is a {cfg['peft_type'].lower()} adapter: it adds virtual tokens, not weights, "
            "so it cannot be merged; use it through transformers' generate() on the PEFT model"
        )
    model = _from_pretrained(base, task, labels, dtype, pad_token_id, quantization, device)
    try:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(
            f"the adapter in {adapter_dir} does not fit the base model {base} "
            f"({type(exc).__name__}: {_first_line(exc)}); pass the model it was trained from "
            "with --base-model"
        ) from None
    return model.merge_and_unload() if merge else model
