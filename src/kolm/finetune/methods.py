"""Fine-tuning methods through Hugging Face PEFT: one function turns a method name into a PEFT config.

Defaults follow the papers, scaled for the small models of the workshop:

| method | what trains | learning rate | source |
| --- | --- | --- | --- |
| full | every weight | 1e-4 | (Howard & Ruder 2018 use small rates for full fine-tuning) |
| lora | rank-r A·B beside each linear | 1e-3 | Hu et al. 2021: r=8, alpha=16; higher lr than full FT |
| dora | LoRA plus a learned magnitude per column | 1e-3 | Liu et al. 2024: same recipe as LoRA |
| waveft | sparse wavelet coefficients of ΔW | 1e-3 | Bilican et al. 2025 (PEFT `WaveFTConfig`) |
| ia3 | a scaling vector on k, v and the MLP input | 5e-3 | Liu et al. 2022: IA3 needs larger rates |
| prompt_tuning | virtual token embeddings | 3e-2 | Lester et al. 2021 use 0.3; smaller models need less |
| qlora | LoRA on a 4-bit NF4 base (bitsandbytes, CUDA; `load_model(quant="nf4")`) | 1e-3 | Dettmers et al. 2023 |

The classification head (`score`) always trains, as PEFT does for sequence
classification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kolm.errors import KolmError

if TYPE_CHECKING:
    from kolm.finetune.config import FinetuneConfig

__all__ = ["DEFAULT_LR", "peft_config", "check_method_available", "LINEAR_MODULES"]

DEFAULT_LR = {
    "full": 1e-4,
    "lora": 1e-3,
    "dora": 1e-3,
    "waveft": 1e-3,
    "ia3": 5e-3,
    "prompt_tuning": 3e-2,
    "qlora": 1e-3,
}

# Names of the linear layers of kolm's GPT (and of Llama), as PEFT sees them.
LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _targets(target_modules: list[str], model_config: Any = None) -> list[str] | str:
    if target_modules == ["all-linear"] or target_modules == "all-linear":
        # PEFT's "all-linear" excludes the output head; naming the layers keeps it explicit. A kolm
        # architecture names its own (Mamba-2 has in_proj/out_proj, RWKV-7 receptance/key/value/output).
        from kolm.models.registry import lora_targets

        try:
            return lora_targets(model_config) if model_config is not None else list(LINEAR_MODULES)
        except KolmError:  # not a kolm model type
            return list(LINEAR_MODULES)
    return list(target_modules)


def check_method_available(method: str, device: str) -> None:
    """Fail with a clear message when a method cannot run here (QLoRA needs bitsandbytes and CUDA)."""
    if method != "qlora":
        return
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise KolmError(
            "QLoRA needs the bitsandbytes package and a CUDA GPU: pip install bitsandbytes, "
            "or choose finetune.method=lora on this machine"
        ) from None
    if not str(device).startswith("cuda"):
        raise KolmError(
            f"QLoRA loads the base model in 4-bit with bitsandbytes, which needs a CUDA GPU (device is {device}); "
            "choose finetune.method=lora here"
        )


def peft_config(method: str, task: str, cfg: FinetuneConfig, model_config: Any) -> Any | None:
    """The PEFT config of `method` for a model `task` (classify, sft, token-classify, span-qa); None for full.

    `cfg` is the FinetuneConfig; `model_config` the base model's config (for
    prompt tuning, which needs the layer count and hidden size).
    """
    import peft

    task_type = peft.TaskType.SEQ_CLS if task == "classify" else peft.TaskType.CAUSAL_LM
    targets = _targets(cfg.target_modules, model_config)
    if method == "full":
        return None
    extra: dict[str, Any] = {}
    if task in ("token-classify", "span-qa"):
        # `task_heads.TaskHeadModel` is no PEFT task type: adapt the LM's layers by name, train the head whole.
        if method == "prompt_tuning":
            raise KolmError(f"prompt tuning needs a PEFT task type, which {task} heads lack; choose lora or dora")
        task_type, extra = None, {"modules_to_save": ["head"]}
    if method in ("lora", "qlora", "dora"):
        return peft.LoraConfig(
            task_type=task_type,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            use_dora=method == "dora",
            bias="none",
            **extra,
        )
    if method == "waveft":
        return peft.WaveFTConfig(
            task_type=task_type,
            target_modules=targets,
            n_frequency=cfg.waveft_n_frequency,
            scaling=cfg.waveft_scaling,
            **extra,
        )
    if method == "ia3":
        # IA3 rescales keys, values and the MLP's down projection input (Liu et al. 2022).
        wanted = [m for m in ("k_proj", "v_proj", "down_proj") if m in targets] or ["k_proj", "v_proj", "down_proj"]
        return peft.IA3Config(
            task_type=task_type,
            target_modules=wanted,
            feedforward_modules=[m for m in wanted if m == "down_proj"],
            **extra,
        )
    if method == "prompt_tuning":
        return peft.PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=cfg.prompt_tokens,
            prompt_tuning_init=peft.PromptTuningInit.RANDOM,
            # Given explicitly: PEFT would otherwise look these up under Llama's field names.
            token_dim=model_config.hidden_size,
            num_layers=model_config.num_hidden_layers,
            num_attention_heads=model_config.num_attention_heads,
            num_transformer_submodules=1,
        )
    raise KolmError(f"unknown fine-tuning method {method!r}; choose one of {', '.join(DEFAULT_LR)}")
