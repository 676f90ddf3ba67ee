"""Quantization side by side: fp32, bf16, int8, int8-wo (PyTorch), ONNX fp32/int8, GGUF Q8_0/Q4_0 (llama.cpp if installed).

For each form of one model, in one run on one machine (`kolm.export.measure`):
size on disk, resident memory, time to first token, batch-1 decode tokens/s
next to this machine's ceiling (memory bandwidth / weight bytes), bits per
character and perplexity on held-out text; with `--classifier`, the NSMC
accuracy of the fine-tuned classifier in each PyTorch form. `--backends`
adds the CPU int8 backend comparison behind `kolm.models.quant` (torch.ao
dynamic vs torchao, eager and compiled).

    .venv/bin/python benchmarks/bench_quant.py --model runs/small/pretrain/final \\
        --classifier runs/nsmc/finetune/classify --nsmc ../shared/data/nsmc/test.tsv --texts 200
    .venv/bin/python benchmarks/bench_quant.py --preset tiny --variants fp32 int8 gguf-q4_0 --new-tokens 16

Without `--model`, a model of the preset's shape with random weights is
measured (speed and size are meaningful, quality is not). GGUF speed needs
llama.cpp's Python binding (`pip install llama-cpp-python`, a source build of
a few minutes); without it GGUF rows give size and quality only.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def random_model(preset: str, out: Path) -> Path:
    """A model dir of the preset's shape with random weights and a byte-level BPE tokenizer trained on the embedded corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from kolm.config import load_config
    from kolm.data.sources import assets_dir
    from kolm.models.registry import build_causal_lm

    cfg = load_config(preset)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.tokenizer.vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    docs = [json.loads(line)["text"] for f in sorted((assets_dir() / "corpus").glob("*.jsonl")) for line in f.open()]
    tok.train_from_iterator(docs, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    model = build_causal_lm(cfg.model, len(fast), 1, 2, 0).eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def held_out(path: str | None, count: int) -> list[str] | None:
    """Held-out documents: lines of --text-file, else NSMC test reviews from ../shared/data, else the built-in sentences."""
    if path:
        return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()][:count]
    nsmc = SHARED / "nsmc" / "test.tsv"
    if nsmc.exists():
        from kolm.data.tasks import read_classification

        return [text for text, _ in read_classification("nsmc", nsmc)][-count:]
    return None


def classifier_accuracy(classifier: str, nsmc: str, variants: list[str], count: int) -> dict[str, float]:
    """NSMC accuracy of a fine-tuned classifier in each PyTorch form (fp32, bf16, int8, int8-wo)."""
    from kolm.data.tasks import read_classification
    from kolm.models.loading import load_model

    pairs = read_classification("nsmc", nsmc)[:count]
    out = {}
    for variant in [v for v in variants if v in ("fp32", "bf16", "int8", "int8-wo")]:
        model, tok = load_model(classifier, task="classify", quant=None if variant == "fp32" else variant)
        right = 0
        with torch.inference_mode():
            for i in range(0, len(pairs), 32):
                batch = pairs[i : i + 32]
                enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
                pred = model(**enc).logits.argmax(-1).tolist()
                right += sum(int(p) == int(label) for p, (_, label) in zip(pred, batch))
        out[variant] = right / len(pairs)
    return out


def int8_backends(model_dir: Path, new_tokens: int) -> list[tuple[str, float, float]]:
    """(backend, decode tok/s, seconds before the first token incl. compile) of the CPU int8 candidates."""
    import copy
    import importlib.util

    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.loading import load_model
    from kolm.models.quant import quantize_int8

    base, tok = load_model(model_dir)
    params = lambda n: SamplingParams(max_new_tokens=n, temperature=0, eos_token_ids=[])  # noqa: E731

    def timed(model) -> tuple[float, float]:
        t = time.perf_counter()
        generate(model, tok, ["오늘은"], params(2))
        warm = time.perf_counter() - t
        t = time.perf_counter()
        generate(model, tok, ["오늘은"], params(1))
        first = time.perf_counter() - t
        t = time.perf_counter()
        generate(model, tok, ["오늘은"], params(new_tokens))
        return (new_tokens - 1) / max(time.perf_counter() - t - first, 1e-9), warm

    candidates = {"fp32": lambda: copy.deepcopy(base), "torch.ao dynamic": lambda: quantize_int8(copy.deepcopy(base))}

    def compiled(make):
        def build():
            m = make()
            m.forward = torch.compile(m.forward, dynamic=True)
            return m

        return build

    candidates["torch.ao dynamic + compile"] = compiled(candidates["torch.ao dynamic"])
    if importlib.util.find_spec("torchao"):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

        def torchao(config):
            def build():
                m = copy.deepcopy(base)
                keep = lambda mod, fqn: isinstance(mod, torch.nn.Linear) and fqn != "lm_head"  # noqa: E731
                quantize_(m, config, filter_fn=keep)
                for name, mod in m.named_modules():  # call each layer: its int8 weight cannot be concatenated
                    if keep(mod, name):
                        mod.register_forward_pre_hook(lambda *a: None)
                return m

            return build

        for name, config in (
            ("int8 act+weight", Int8DynamicActivationInt8WeightConfig),
            ("int8 weight-only", Int8WeightOnlyConfig),
        ):
            candidates[f"torchao {name}"] = torchao(config())
            candidates[f"torchao {name} + compile"] = compiled(torchao(config()))
    rows = []
    for name, build in candidates.items():
        try:
            rate, warm = timed(build())
            rows.append((name, rate, warm))
        except Exception as exc:  # noqa: BLE001 - a backend that fails here is a result too
            rows.append((f"{name} (failed: {type(exc).__name__})", float("nan"), float("nan")))
    return rows


def main() -> None:
    from kolm.export.measure import VARIANTS, default_variants, markdown, measure_variants, read_bandwidth, write_table

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="kolm model dir (default: a random model of --preset's shape)")
    p.add_argument("--preset", default="small")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, help="default: all this environment can measure")
    p.add_argument("--text-file", help="held-out text, one document per line")
    p.add_argument("--texts", type=int, default=100, help="held-out documents for bits per character")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--classifier", help="fine-tuned classifier dir (runs/<name>/finetune/classify)")
    p.add_argument("--nsmc", default=str(SHARED / "nsmc" / "test.tsv"), help="NSMC test file for --classifier")
    p.add_argument("--nsmc-count", type=int, default=1000)
    p.add_argument("--backends", action="store_true", help="also compare the CPU int8 backends")
    p.add_argument("--out", help="folder for quant.json and quant.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else random_model(args.preset, Path(tmp) / "model")
        variants = args.variants or default_variants()
        bandwidth = read_bandwidth()
        rows = measure_variants(
            model,
            variants,
            texts=held_out(args.text_file, args.texts),
            new_tokens=args.new_tokens,
            bandwidth_gbs=bandwidth,
        )
        if args.classifier:
            for variant, acc in classifier_accuracy(args.classifier, args.nsmc, variants, args.nsmc_count).items():
                row = next(r for r in rows if r.variant == variant)
                row.note = (row.note + "; " if row.note else "") + f"NSMC accuracy {acc:.4f}"
        print(markdown(rows, bandwidth))
        if args.out:
            write_table(rows, args.out, bandwidth)
        if args.backends:
            print("| CPU int8 backend | decode tok/s | first call s (incl. compile) |\n| --- | ---: | ---: |")
            for name, rate, warm in int8_backends(model, args.new_tokens):
                print(f"| {name} | {rate:.1f} | {warm:.1f} |")
        print(json.dumps({"threads": torch.get_num_threads(), "model": str(args.model or f"random {args.preset}")}))


if __name__ == "__main__":
    main()
