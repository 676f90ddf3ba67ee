"""The model card of an export: README.md in Korean and English, with Hub metadata.

Built with `huggingface_hub`'s `ModelCard`/`ModelCardData` from what the run
directory holds, never from a stage's code: the resolved `config.yaml`
(model shape, pretraining budget, data sources), the eval stage's headline
metrics (`eval/manifest.json`), and `kolm_task.json` of a fine-tuned model.
The YAML header carries language `ko`, the licence, the library, tags and
the Hub datasets the run read; the body says what the model is, how to load
the chosen format, its measured metrics, intended use and limits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["run_of", "card_text", "write_card"]

LICENSE = "apache-2.0"
_LIBRARY = {"hf-llama": "transformers", "hf": "transformers", "gguf": "gguf", "onnx": "onnx"}


def run_of(model_dir: str | Path) -> Path | None:
    """The run directory holding `model_dir` (the nearest parent with config.yaml), if any."""
    model_dir = Path(model_dir).resolve()
    for parent in [model_dir, *model_dir.parents]:
        if (parent / "config.yaml").is_file():
            return parent
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _usage(fmt: str, quant: str, repo: str) -> str:
    """How to load this export, as a fenced code block."""
    if fmt == "gguf":
        from kolm.export.gguf import gguf_file_name

        name = gguf_file_name(quant)
        return (
            "```bash\n"
            f'llama-cli -m {name} -p "한국어 문장을 이어 써 보세요:" -n 64\n'
            f"# Ollama: printf 'FROM ./{name}\\n' > Modelfile && ollama create kolm -f Modelfile && ollama run kolm\n"
            "```\n\n"
            "```python\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo}", gguf_file="{name}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}", gguf_file="{name}")\n'
            "```"
        )
    if fmt == "onnx":
        return (
            "```python\n"
            "import onnxruntime as ort\n"
            'session = ort.InferenceSession("model.onnx")  # inputs: input_ids, attention_mask, position_ids,\n'
            "# past_key_values.{i}.key/.value (batch, kv_heads, past, head_dim); outputs: logits, present.{i}.*\n"
            "```"
        )
    return (
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f'model = AutoModelForCausalLM.from_pretrained("{repo}")  # LlamaForCausalLM, no kolm needed\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n'
        'inputs = tokenizer.apply_chat_template([{"role": "user", "content": "안녕하세요"}],\n'
        '                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)\n'
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))\n"
        "```\n\n"
        "```bash\n"
        f"vllm serve {repo}   # OpenAI-compatible server on a GPU\n"
        "```"
    )


def card_text(model_dir: str | Path, fmt: str, *, quant: str = "none", repo: str | None = None) -> str:
    """The README.md of an export of `model_dir` in format `fmt` (Hub metadata header + Korean/English body)."""
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    run = run_of(model_dir)
    cfg = _read_yaml(run / "config.yaml") if run else {}
    metrics = (_read_json(run / "eval" / "manifest.json").get("metrics") or {}) if run else {}
    config = _read_json(model_dir / "config.json")
    task = _read_json(model_dir / "kolm_task.json")
    name = repo or (cfg.get("name") and f"kolm-{cfg['name']}") or model_dir.resolve().name
    datasets = [
        s["path"] for s in (cfg.get("data") or {}).get("sources") or [] if s.get("kind") == "hub" and s.get("path")
    ]
    tags = ["kolm", "korean", "llama", fmt] + ([quant] if quant not in ("none", None) else [])
    data = ModelCardData(
        language="ko",
        license=LICENSE,
        library_name=_LIBRARY.get(fmt, "transformers"),
        pipeline_tag="text-generation",
        tags=tags,
        datasets=datasets or None,
        model_name=name,
    )
    shape = ", ".join(
        f"{k} {config[k]}"
        for k in ("n_layers", "d_model", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len")
        if k in config
    )
    pre = cfg.get("pretrain") or {}
    budget = ", ".join(f"{k} {pre[k]}" for k in ("max_steps", "seq_len", "batch_size", "lr", "schedule") if k in pre)
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items()) or "| (no eval stage in this run) | |"
    kind = f"fine-tuned for {task['task']} with {task.get('method')}" if task else "pretrained from scratch"
    fmt_line = fmt + (f" ({quant})" if quant not in ("none", None) else "")
    body = f"""
# {name}

kolm으로 처음부터 학습한 한국어 Llama 구조 언어 모델입니다 ({kind}). 형식: **{fmt_line}**.
A Korean Llama-architecture language model trained with kolm ({kind}). Format: **{fmt_line}**.

## 사용법 · How to use

{_usage(fmt, quant, repo or "USER/NAME")}

## 모델 · Model

- 구조 · architecture: decoder-only Transformer (RMSNorm, rotary positions, grouped-query attention, SwiGLU), {shape}
- 사전학습 · pretraining: {budget or "see config.yaml of the run"}
- 데이터 · data: {", ".join(datasets) or "the run's curated Korean corpus (see the run's data/curation_report.md)"}

## 평가 · Evaluation

| metric | value |
| --- | --- |
{rows}

## 용도와 한계 · Intended use and limits

연구와 교육용 소형 모델입니다. 사실 확인 없이 출력을 믿지 마십시오. 학습 데이터의 편향을 그대로
드러낼 수 있고, 개인정보는 정제 단계에서 가렸지만 완전하다고 보장할 수 없습니다.
A small model for research and teaching. Do not rely on its output without checking it: it can
repeat the biases of its training text, and the PII redaction of the data stage is not a guarantee.

Licence: Apache-2.0.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write_card(
    out_dir: str | Path, model_dir: str | Path, fmt: str, *, quant: str = "none", repo: str | None = None
) -> Path:
    """Write README.md (the model card) into `out_dir`; returns its path."""
    path = Path(out_dir) / "README.md"
    path.write_text(card_text(model_dir, fmt, quant=quant, repo=repo), encoding="utf-8")
    return path
