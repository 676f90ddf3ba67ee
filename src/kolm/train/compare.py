"""`kolm arch compare`: several architectures pretrained on the same data, tokenizer and token budget, side by side.

Every selected architecture is sized to the parameter count of the run's own
`model:` section (non-embedding parameters, within 10%: its shape follows the
width (`scaled_section`), then one width or depth knob per architecture,
`SIZE_KNOBS`, is set to the closest count), pretrained by the same `pretrain`
function with the same `pretrain:` settings, and measured the same way:

* validation loss and bits per character against tokens seen and wall time;
* training tokens/s and peak memory (each run in a fresh process by default,
  so the CPU peak RSS of one does not carry into the next);
* time to first token and decode latency per token at several context
  lengths, and the bytes of the cache or state each needs there, on
  randomly initialised models of the same shapes (speed does not depend on
  the weights): the growing KV cache of GPT, the smaller latent cache of MLA
  and the flat state of Mamba-2 and RWKV-7;
* parameters, total and active (an MoE token uses only its top-k experts).

Writes `compare.json`, `compare.md` and `compare.png` into the output folder
(`runs/<name>/arch/` from the CLI).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from kolm.errors import ConfigError
from kolm.model_config import ARCH_SECTIONS, ModelConfig
from kolm.train.config import PretrainConfig

__all__ = [
    "SIZE_KNOBS",
    "scaled_section",
    "sized_configs",
    "param_counts",
    "measure_latency",
    "compare_archs",
    "write_compare",
]

# Architecture -> (field it is sized by, where it lives: the shared section or the arch's own, candidate values).
SIZE_KNOBS: dict[str, tuple[str, str, range]] = {
    "gpt": ("ffn_dim", "arch", range(32, 8193, 32)),
    "mamba2": ("n_layers", "shared", range(1, 97)),
    "rwkv7": ("ffn_dim", "arch", range(32, 8193, 32)),
    "deepseek": ("moe_ffn_dim", "arch", range(8, 4097, 8)),
}
LENGTHS = (128, 512, 2048, 8192)


# ----------------------------------------------------------------------------
# Sizing


def _round8(x: float) -> int:
    return max(8, int(round(x / 8)) * 8)


def scaled_section(arch: str, d_model: int) -> Any:
    """The `model.<arch>` subsection for a model of width `d_model` when the run has none: heads of 32 channels,
    RWKV-7's low ranks from its own formulas (about 1.8·√C, 1.3·√C, 0.6·C^0.8), DeepSeek's latent at d_model/2
    and its dense layer at 3·d_model; the rest are the subsection's defaults."""
    heads = max(1, d_model // 32)
    if arch == "gpt":
        return ARCH_SECTIONS[arch](n_heads=heads, n_kv_heads=heads // 2 if heads % 2 == 0 else heads)
    if arch == "rwkv7":
        root = math.sqrt(d_model)
        return ARCH_SECTIONS[arch](
            head_size=32 if d_model % 32 == 0 else d_model // heads,
            decay_rank=_round8(1.8 * root),
            a_rank=_round8(1.8 * root),
            v_rank=_round8(1.3 * root),
            gate_rank=_round8(0.6 * d_model**0.8),
        )
    if arch == "deepseek":
        return ARCH_SECTIONS[arch](n_heads=heads, kv_lora_rank=_round8(d_model / 2), ffn_dim=_round8(3 * d_model))
    return ARCH_SECTIONS[arch]()


def _with_arch(model_cfg: ModelConfig, arch: str, value: int | None = None) -> ModelConfig:
    """`model_cfg` switched to `arch` (its own subsection, or `scaled_section`), knob set to `value`."""
    own = getattr(model_cfg, arch) if model_cfg.arch == arch else scaled_section(arch, model_cfg.d_model)
    shared: dict[str, Any] = {name: None for name in ARCH_SECTIONS}
    if value is not None:
        field, where, _ = SIZE_KNOBS[arch]
        if where == "arch":
            own = dataclasses.replace(own, **{field: value})
        else:
            shared[field] = value
    return dataclasses.replace(model_cfg, arch=arch, **{**shared, arch: own})


def param_counts(model_cfg: ModelConfig, vocab_size: int) -> tuple[int, int]:
    """(total, active) non-embedding parameters of the model `model_cfg` describes (built on the meta device)."""
    from kolm.models.registry import get_arch, hf_config

    arch = get_arch(model_cfg.arch)
    config = hf_config(model_cfg, vocab_size)
    with torch.device("meta"):
        model = arch.causal_lm(config)
    embeddings = vocab_size * model_cfg.d_model * (1 if config.tie_word_embeddings else 2)
    total = sum(p.numel() for p in model.parameters()) - embeddings
    inactive = 0
    if model_cfg.arch == "deepseek":  # experts a token does not visit
        c = config
        moe_layers = c.n_layers - min(c.first_k_dense, c.n_layers)
        inactive = moe_layers * (c.n_routed_experts - c.num_experts_per_tok) * 3 * c.d_model * c.moe_ffn_dim
    return total, total - inactive


def sized_configs(model_cfg: ModelConfig, archs: list[str], vocab_size: int) -> dict[str, ModelConfig]:
    """One ModelConfig per architecture with about the non-embedding parameters of `model_cfg` (within 10%)."""
    target, _ = param_counts(model_cfg, vocab_size)
    out = {}
    for arch in archs:
        if arch not in SIZE_KNOBS:
            raise ConfigError(f"--arch {arch!r}: not a kolm architecture; choose from {', '.join(SIZE_KNOBS)}")
        if arch == model_cfg.arch:
            out[arch] = model_cfg
            continue
        # Counts grow with the knob: bisect for the first value above the target, then take it or the one before.
        values = SIZE_KNOBS[arch][2]
        lo, hi = 0, len(values) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if param_counts(_with_arch(model_cfg, arch, values[mid]), vocab_size)[0] > target:
                hi = mid
            else:
                lo = mid + 1
        candidates = [_with_arch(model_cfg, arch, values[i]) for i in {max(lo - 1, 0), lo}]
        gap, cfg = min(
            ((abs(param_counts(c, vocab_size)[0] - target) / target, c) for c in candidates), key=lambda x: x[0]
        )
        if gap > 0.10:
            raise ConfigError(
                f"cannot size {arch} to {target:,} parameters within 10% by {SIZE_KNOBS[arch][0]}; "
                f"change model.d_model or model.n_layers"
            )
        out[arch] = cfg
    return out


# ----------------------------------------------------------------------------
# Speed and state size


def _state_bytes(state: Any) -> int:
    """Bytes of every tensor an inference state holds (views of the same buffers counted once)."""
    seen, total = set(), 0
    for value in vars(state).values():
        tensors = value.values() if isinstance(value, dict) else [value]
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                total += t.numel() * t.element_size()
    return total


def measure_latency(
    model_cfg: ModelConfig, vocab_size: int, lengths: tuple[int, ...], decode_tokens: int = 8, device: str = "cpu"
) -> list[dict[str, float]]:
    """Per context length: time to first token (prefill) and decode ms/token of a random model, and its state bytes."""
    from kolm.models.blocks import reuse_fused_weights
    from kolm.models.registry import build_causal_lm

    longest = max(lengths) + decode_tokens
    cfg = dataclasses.replace(model_cfg, max_seq_len=max(model_cfg.max_seq_len, longest))
    model = build_causal_lm(cfg, vocab_size, device=device).eval()  # weights outside inference mode, as the engine
    gen = torch.Generator().manual_seed(0)
    rows = []
    with reuse_fused_weights(model), torch.inference_mode():
        warm = model.new_cache(1, 20, device)  # warm-up: a prefill and decode steps, as measured below
        model(input_ids=torch.randint(vocab_size, (1, 16), generator=gen).to(device), cache=warm, use_cache=True)
        for _ in range(2):
            model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), cache=warm, use_cache=True)
        for n in lengths:
            ids = torch.randint(vocab_size, (1, n), generator=gen).to(device)
            t0 = time.perf_counter()
            state = model.new_cache(1, n + decode_tokens, device)
            out = model(input_ids=ids, cache=state, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1:].argmax(-1)
            t1 = time.perf_counter()
            for _ in range(decode_tokens):
                nxt = model(input_ids=nxt, cache=state, use_cache=True, logits_to_keep=1).logits[:, -1:].argmax(-1)
            t2 = time.perf_counter()
            rows.append(
                {
                    "context": n,
                    "ttft_ms": round(1000 * (t1 - t0), 2),
                    "decode_ms_per_token": round(1000 * (t2 - t1) / decode_tokens, 3),
                    "state_bytes": _state_bytes(model.new_cache(1, n, device)),
                }
            )
    return rows


# ----------------------------------------------------------------------------
# Training


def _train_one(
    model_cfg: ModelConfig, p: PretrainConfig, data_dir: str, tokenizer_dir: str, out: str, seed: int, device: str
) -> dict[str, Any]:
    from kolm.train.stage import pretrain

    return pretrain(
        model_cfg,
        p,
        data_dir=Path(data_dir),
        tokenizer_dir=Path(tokenizer_dir),
        out=Path(out),
        seed=seed,
        device=device,
    )


def _curve(metrics_path: Path) -> list[dict[str, float]]:
    """Validation points (step, tokens, elapsed_s, val_loss, val_bpc) from a run's metrics.jsonl."""
    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    logged = [r for r in records if "tokens" in r]
    tokens_per_step = logged[0]["tokens"] / logged[0]["step"] if logged else 0.0
    points = []
    for r in records:
        if "val_loss" not in r:
            continue
        before = [x for x in logged if x["step"] <= r["step"]]
        elapsed = before[-1]["elapsed_s"] * r["step"] / before[-1]["step"] if before else float("nan")
        points.append(
            {
                "step": r["step"],
                "tokens": int(r.get("tokens", tokens_per_step * r["step"])),
                "elapsed_s": round(r.get("elapsed_s", elapsed), 2),
                "val_loss": r["val_loss"],
                "val_bpc": r.get("val_bpc", float("nan")),
            }
        )
    return points


def compare_archs(
    model_cfg: ModelConfig,
    p: PretrainConfig,
    archs: list[str],
    *,
    data_dir: Path,
    tokenizer_dir: Path,
    out: Path,
    seed: int = 0,
    device: str = "cpu",
    lengths: tuple[int, ...] = LENGTHS,
    decode_tokens: int = 8,
    isolate: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Size, pretrain and measure every architecture in `archs`; write compare.{json,md,png} into `out`; return
    the results. `isolate` trains each in a fresh process (fair peak memory); off, everything runs in this one."""
    from transformers import AutoTokenizer

    if not archs:
        raise ConfigError("arch compare needs at least one architecture (--arch)")
    vocab_size = len(AutoTokenizer.from_pretrained(str(tokenizer_dir)))
    p = dataclasses.replace(p, resume="never")  # every comparison trains from scratch
    configs = sized_configs(model_cfg, archs, vocab_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "pretrain": dataclasses.asdict(p),
        "device": device,
        "threads": torch.get_num_threads(),
        "archs": {},
    }
    for arch, cfg in configs.items():
        total, active = param_counts(cfg, vocab_size)
        log(f"{arch}: {total / 1e6:.2f}M parameters ({active / 1e6:.2f}M active); pretraining")
        run_dir = out / arch
        args = (cfg, p, str(data_dir), str(tokenizer_dir), str(run_dir), seed, device)
        if isolate:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(1) as pool:
                final = pool.apply(_train_one, args)
        else:
            if str(device).startswith("cuda"):  # one process: each architecture's peak from its own start
                torch.cuda.reset_peak_memory_stats()
            final = _train_one(*args)
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        log(f"{arch}: measuring decode latency at {', '.join(map(str, lengths))} tokens")
        results["archs"][arch] = {
            "model": dataclasses.asdict(cfg),
            "params_total": total,
            "params_active": active,
            "val_loss": final.get("val_loss"),
            "val_bpc": final.get("val_bpc"),
            "train_tok_per_s": final.get("tok_per_s"),
            "train_time_s": final.get("train_time_s"),
            "peak_mem_mb": max((r["peak_mem_mb"] for r in records if "peak_mem_mb" in r), default=None),
            "curve": _curve(run_dir / "metrics.jsonl"),
            "latency": measure_latency(cfg, vocab_size, lengths, decode_tokens, device),
        }
    write_compare(results, out)
    return results


# ----------------------------------------------------------------------------
# Writing


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def write_compare(results: dict[str, Any], out: Path) -> Path:
    """compare.json, compare.md (also as summary.md, which the run report shows) and compare.png from
    `compare_archs` results; returns the Markdown path."""
    out = Path(out)
    (out / "compare.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    archs = results["archs"]
    lengths = [row["context"] for row in next(iter(archs.values()))["latency"]]
    p = results["pretrain"]
    lines = [
        "# Architectures side by side (아키텍처 비교)",
        "",
        f"Same data, tokenizer and budget: {p['max_steps']} steps of {p['batch_size']}x{p['seq_len']} tokens"
        f" (pretrain.tokens_per_step {p['tokens_per_step']}). Parameters exclude embeddings. Measured on"
        f" {results.get('device', '?')} with {results.get('threads', '?')} threads; speeds depend on the machine.",
        "",
        "| arch | params (M) | active (M) | val loss | val bpc | train tok/s | peak MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arch, r in archs.items():
        lines.append(
            f"| {arch} | {r['params_total'] / 1e6:.3f} | {r['params_active'] / 1e6:.3f} | {_fmt(r['val_loss'])} "
            f"| {_fmt(r['val_bpc'])} | {_fmt(r['train_tok_per_s'], 0)} | {_fmt(r['peak_mem_mb'], 0)} |"
        )
    lines += [
        "",
        "Decode ms/token · time to first token ms · cache/state KiB, by context length (random weights, batch 1):",
        "",
        "| arch | " + " | ".join(f"{n:,}" for n in lengths) + " |",
        "| --- | " + " | ".join("---:" for _ in lengths) + " |",
    ]
    for arch, r in archs.items():
        cells = [
            f"{x['decode_ms_per_token']:.2f} · {x['ttft_ms']:.0f} · {x['state_bytes'] / 1024:,.0f}"
            for x in r["latency"]
        ]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    lines += ["", "![validation loss, speed, memory and latency by architecture](compare.png)"]
    md = out / "compare.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")  # the run report's section
    _plot(archs, out / "compare.png")
    return md


def _plot(archs: dict[str, Any], path: Path) -> None:
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11.0, 7.5), dpi=110)
    for arch, r in archs.items():
        curve = r["curve"]
        axes[0, 0].plot([c["tokens"] for c in curve], [c["val_bpc"] for c in curve], marker="o", label=arch)
        axes[0, 1].plot([c["elapsed_s"] for c in curve], [c["val_bpc"] for c in curve], marker="o", label=arch)
        ctx = [x["context"] for x in r["latency"]]
        axes[1, 0].plot(ctx, [x["decode_ms_per_token"] for x in r["latency"]], marker="o", label=arch)
        axes[1, 1].plot(ctx, [x["state_bytes"] / 2**20 for x in r["latency"]], marker="o", label=arch)
    titles = [
        ("validation bits/char vs tokens seen", "tokens", "val bpc"),
        ("validation bits/char vs wall time", "seconds", "val bpc"),
        ("decode latency per token", "context tokens", "ms/token"),
        ("cache / state size", "context tokens", "MiB"),
    ]
    for ax, (title, xlabel, ylabel) in zip(axes.flat, titles):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xscale("log", base=2)
    axes[1, 1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
