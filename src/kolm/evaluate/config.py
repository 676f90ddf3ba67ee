"""Settings of the evaluation stage (`kolm eval`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["EvalConfig", "JudgeConfig"]


@dataclass
class JudgeConfig(Section):
    """LLM-as-judge through an OpenAI-compatible endpoint (off unless base_url is set)."""

    base_url: str | None = option(
        None, help="endpoint such as http://127.0.0.1:8000/v1 or https://api.openai.com/v1; None = no judging"
    )
    model: str = option("gpt-4o-mini", help="judge model name sent to the endpoint")
    api_key_env: str = option("OPENAI_API_KEY", help="environment variable holding the API key ('' = send none)")
    mode: str = option(
        "pairwise",
        help="pairwise (two models' answers) or rubric (1-5 score per answer)",
        choices=["pairwise", "rubric"],
    )
    swap: bool = option(True, help="pairwise: ask again with the answers swapped; a win needs both orders to agree")
    max_items: int = option(20, help="judge at most this many prompts", ge=1)
    timeout: float = option(60.0, help="seconds per request", gt=0)


# The one loader's quant= values (kolm.models.quant.QUANTS), written out: loading a config must not import torch.
QUANT_CHOICES = ("int8", "int8-wo", "bf16", "nf4", "llm-int8")


@dataclass
class EvalConfig(Section):
    """What `kolm eval` measures."""

    model: str | None = option(
        None,
        help="model dir to evaluate (any HF causal LM dir); default: this run's pretrain/final "
        "(with suite=klue: a run dir, finetune dir or fine-tuned KLUE model; default: this run)",
    )
    suite: str | None = option(
        None, help="klue: only the KLUE benchmark table (STS, NER, MRC, RE, YNAT, NLI)", choices=[None, "klue"]
    )
    klue_dir: str | None = option(
        None, help="folder of the official KLUE v1.1 files whose dev sets are scored; default: finetune.klue.dir"
    )
    klue_max_examples: int = option(0, help="score at most this many dev examples per KLUE task (0 = all)", ge=0)
    device: str | None = option(None, help="device override (default: the run's device)")
    quant: str | None = option(
        None,
        help="evaluate models loaded quantized: int8 (CPU dynamic), int8-wo (CPU int8 weights only), bf16, nf4 / llm-int8 (CUDA, bitsandbytes)",
        choices=[None, *QUANT_CHOICES],
    )
    # language modelling
    lm: bool = option(True, help="perplexity and bits per character on held-out text")
    lm_file: str | None = option(
        None, help="text source instead of the data stage's validation split (.txt, .jsonl, .parquet)"
    )
    text_field: str = option("text", help="text column of lm_file / parquet shards")
    max_length: int = option(0, help="sliding-window length in tokens (0 = the model's context length)", ge=0)
    stride: int = option(0, help="sliding-window stride in tokens (0 = half of max_length)", ge=0)
    lm_max_docs: int = option(200, help="score at most this many documents (0 = all)", ge=0)
    # few-shot in-context classification
    fewshot: bool = option(True, help="zero/one/k-shot classification by label-word log-likelihood")
    fewshot_template: str = option("sentiment", help="built-in template name or YAML path (kolm/evaluate/templates/)")
    fewshot_k: list[int] = option([0, 1, 4], help="numbers of demonstrations to try")
    fewshot_file: str | None = option(
        None, help="labelled jsonl {text,label} to classify; default: embedded reviews_test.jsonl"
    )
    fewshot_pool: str | None = option(
        None, help="labelled jsonl the demonstrations come from; default: embedded reviews_train.jsonl"
    )
    fewshot_max_examples: int = option(100, help="classify at most this many examples (0 = all)", ge=0)
    fewshot_models: list[str] = option([], help="more model dirs for the few-shot table (accuracy vs k and model size)")
    calibrate: bool = option(True, help="also report calibrated accuracy (content-free prior, Zhao et al. 2021)")
    # generation
    generation: bool = option(True, help="BLEU/chrF/ROUGE against references and prompt variations")
    prompts_file: str | None = option(None, help="jsonl {id,prompt,reference}; default: embedded eval_prompts.jsonl")
    max_prompts: int = option(20, help="use at most this many prompts (0 = all)", ge=0)
    max_new_tokens: int = option(64, help="tokens generated per prompt", ge=1)
    variants: list[str] = option(
        ["plain", "step_by_step", "persona"], help="prompt variations shown side by side (templates/variations.yaml)"
    )
    variation_prompts: int = option(3, help="prompts shown under every variation in eval.md", ge=0)
    temperature: float = option(
        0.8, help="sampling temperature of the prompt variations (metrics use greedy decoding)", ge=0
    )
    top_p: float = option(0.95, help="nucleus sampling of the prompt variations", gt=0, le=1)
    bleu_tokenize: str = option(
        "auto",
        help="BLEU tokenization: auto (ko-mecab if installed, else kiwi), ko-mecab, kiwi, char, 13a",
        choices=["auto", "ko-mecab", "kiwi", "char", "13a"],
    )
    rouge_tokenizer: str = option(
        "kiwi",
        help="ROUGE tokens: kiwi morphemes, char (syllables) or eojeol (words)",
        choices=["kiwi", "char", "eojeol"],
    )
    # fine-tuned models
    finetuned: bool = option(True, help="evaluate runs/<name>/finetune/<task>/ when present")
    classify_file: str | None = option(
        None, help="labelled file (jsonl/tsv/csv) for the classifier; default: the finetune test split"
    )
    labelled_text_field: str = option(
        "text", help="text column of fewshot_file, fewshot_pool and classify_file (NSMC tsv: document)"
    )
    label_field: str = option("label", help="label column of fewshot_file, fewshot_pool and classify_file")
    labels: list[str] = option([], help="declared label set of classify_file (empty = the classifier's own labels)")
    # safety
    safety: bool = option(True, help="answer the Korean safety probe set with the SFT and aligned models and score it")
    safety_file: str | None = option(
        None, help="probes jsonl {kind, prompt, must, safe, unsafe}; default: embedded safety_probes.jsonl"
    )
    safety_reward: str | None = option(
        None, help="reward model dir that judges the answers; default: this run's align/reward when present"
    )
    judge: JudgeConfig = option(default_factory=JudgeConfig, help="LLM-as-judge")

    def validate(self) -> None:
        if any(k < 0 for k in self.fewshot_k):
            raise ConfigError("eval.fewshot_k: numbers of demonstrations must be >= 0")
        if self.stride and self.max_length and self.stride > self.max_length:
            raise ConfigError("eval.stride: must not exceed eval.max_length")
