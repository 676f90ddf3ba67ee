"""Reward-model training (`align.method=reward`): a one-output classifier fit to preference pairs.

Bradley-Terry (Ouyang et al. 2022): P(chosen > rejected) = sigmoid(r(x, y_c) -
r(x, y_r)), trained by minimising -log sigmoid(r_c - r_r - m), where m is the
pair's optional margin (Llama 2's margin loss; 0 when the data has none).

Written as our own short loop rather than TRL's `RewardTrainer`: the reward
model must score text exactly as PPO, GRPO and `kolm eval` will query it
(`kolm.align.scoring.ModelReward`: prompt + answer rendered as text,
re-tokenized, EOS appended as the pooled token, left-padded), and the same
encoder (`kolm.data.batching.encode_for_classifier`) in training and in use
rules out a train/serve mismatch. The model is `AutoModelForSequenceClassification`
with one label (kolm's `KolmGPTForSequenceClassification` or any HF model),
fully trained or with LoRA, saved with `kolm_task.json` so `load_model(...,
task="classify")` and `align.reward=<dir>` read it.

Reports pairwise accuracy and mean margin on held-out pairs and a histogram of
the held-out reward margins (`margins.png`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kolm.align.config import AlignConfig
from kolm.data.tasks import Preference
from kolm.files import append_jsonl
from kolm.progress import Progress

__all__ = ["RewardResult", "bradley_terry_loss", "render_answer", "render_pair", "train_reward_model", "pair_scores"]


@dataclass
class RewardResult:
    """What training the reward model measured."""

    train_pairs: int
    val_pairs: int
    accuracy: float
    mean_margin: float
    initial_accuracy: float
    wall_time_s: float
    margins: list[float] = field(default_factory=list, repr=False)
    output_dir: str = ""


def bradley_terry_loss(chosen: Any, rejected: Any, margin: Any | None = None) -> Any:
    """Mean of -log sigmoid(r_c - r_r - margin) over the pairs (tensors (N,))."""
    import torch.nn.functional as F

    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def render_answer(tokenizer: Any, prompt: Any, answer: Any) -> str:
    """Prompt + answer as the reward model reads them: the chat template when the tokenizer has one, else plain text."""
    if getattr(tokenizer, "chat_template", None):
        question = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        reply = answer if isinstance(answer, list) else [{"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(question + reply, tokenize=False)
    question = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    text = answer if isinstance(answer, str) else "\n".join(m["content"] for m in answer)
    return f"{question}\n{text}"


def render_pair(tokenizer: Any, pair: Preference) -> tuple[str, str]:
    """(prompt + chosen, prompt + rejected) as text (`render_answer`)."""
    return render_answer(tokenizer, pair.prompt, pair.chosen), render_answer(tokenizer, pair.prompt, pair.rejected)


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int, device: str) -> tuple[Any, Any]:
    from kolm.data.batching import encode_for_classifier, pad_rows, pad_token_id

    ids, mask = pad_rows(
        [encode_for_classifier(tokenizer, t, max_length) for t in texts], pad_token_id(tokenizer), left=True
    )
    return ids.to(device), mask.to(device)


def pair_scores(
    model: Any, tokenizer: Any, pairs: Sequence[Preference], max_length: int, device: str, batch_size: int = 16
) -> tuple[list[float], list[float]]:
    """Rewards of the chosen and of the rejected answer of every pair."""
    import torch

    chosen: list[float] = []
    rejected: list[float] = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            texts = [render_pair(tokenizer, p) for p in pairs[i : i + batch_size]]
            n = len(texts)
            ids, mask = _encode(tokenizer, [c for c, _ in texts] + [r for _, r in texts], max_length, device)
            r = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            chosen += r[:n].tolist()
            rejected += r[n:].tolist()
    return chosen, rejected


def margin_histogram(margins: Sequence[float], path: Path) -> Path:
    """Histogram of held-out reward margins r_c - r_r (right of 0 = ranked correctly)."""
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(list(margins), bins=20, color="#4878a8")
    ax.axvline(0, color="#c44e52", linewidth=1)
    ax.set_xlabel("reward margin r(chosen) - r(rejected) (보상 차이)")
    ax.set_ylabel("pairs")
    ax.set_title("held-out preference pairs (검증 선호 쌍)")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def train_reward_model(
    cfg: AlignConfig,
    pairs: Sequence[Preference],
    *,
    base_model: str | Path,
    out: Path,
    seed: int = 0,
    device: str = "cpu",
    lr: float = 1e-4,
    progress: Progress | None = None,
) -> RewardResult:
    """Train a one-output reward model on `pairs` from `base_model`; write `out/model` or `out/adapter`."""
    import torch

    from kolm.models.loading import find_model_dir, is_adapter, load_model, write_task_info

    progress = progress or Progress(enabled=False)
    base = find_model_dir(base_model).resolve()
    # the head is new (one output); load_model sets its pad id from the tokenizer
    model, tokenizer = load_model(base, task="classify", device=device, labels=["reward"], merge=True)
    if cfg.peft == "lora":
        import peft

        model = peft.get_peft_model(
            model,
            peft.LoraConfig(
                task_type=peft.TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear"
            ),
        )
    model.to(device)
    rng = random.Random(seed)
    order = list(pairs)
    rng.shuffle(order)
    n_val = max(1, int(len(order) * cfg.val_fraction))
    val, train = order[:n_val], order[n_val:]
    model.eval()
    c0, r0 = pair_scores(model, tokenizer, val, cfg.max_length, device)
    initial_acc = sum(c > r for c, r in zip(c0, r0)) / len(val)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    metrics_path = out / "metrics.jsonl"
    t0 = time.perf_counter()
    cursor = 0
    with progress.task("align: reward model", total=cfg.steps) as bar:
        for step in range(1, cfg.steps + 1):
            batch = [train[(cursor + i) % len(train)] for i in range(min(cfg.batch_size, len(train)))]
            cursor += len(batch)
            texts = [render_pair(tokenizer, p) for p in batch]
            ids, mask = _encode(tokenizer, [c for c, _ in texts] + [r for _, r in texts], cfg.max_length, device)
            r = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            chosen, rejected = r[: len(batch)], r[len(batch) :]
            margin = torch.tensor([p.margin or 0.0 for p in batch], device=device)
            loss = bradley_terry_loss(chosen, rejected, margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            append_jsonl(
                metrics_path,
                {
                    "step": step,
                    "loss": round(float(loss.detach()), 5),
                    "accuracy": round(float((chosen > rejected).float().mean()), 4),
                    "margin": round(float((chosen - rejected).mean()), 4),
                },
            )
            bar.advance(1)
    wall = time.perf_counter() - t0
    c1, r1 = pair_scores(model, tokenizer, val, cfg.max_length, device)
    margins = [c - r for c, r in zip(c1, r1)]
    as_adapter = cfg.peft == "lora" and not is_adapter(base)  # an adapter over a merged adapter has no base dir
    if cfg.peft == "lora" and not as_adapter:
        model = model.merge_and_unload()
    target = out / ("adapter" if as_adapter else "model")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    write_task_info(target, "classify", "reward", ["reward"], base if as_adapter else None)
    margin_histogram(margins, out / "margins.png")
    return RewardResult(
        train_pairs=len(train),
        val_pairs=len(val),
        accuracy=round(sum(m > 0 for m in margins) / len(val), 4),
        mean_margin=round(sum(margins) / len(val), 4),
        initial_accuracy=round(initial_acc, 4),
        wall_time_s=round(wall, 2),
        margins=[round(m, 4) for m in margins],
        output_dir=str(target),
    )
