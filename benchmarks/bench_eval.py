"""Time the eval stage on a model of the tiny preset's size (random weights).

Builds a throw-away run dir: a byte-level BPE tokenizer trained on 3,000 NSMC
reviews, a Llama with the tiny preset's shape, 100 validation documents, 60
labelled reviews (few-shot k = 0, 1, 4), 8 prompts with references. Then runs
`kolm eval` with configs/tiny.yaml. Needs ../shared/data (NSMC).

    .venv/bin/python benchmarks/bench_eval.py [--threads 2] [--kolm]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NSMC = REPO / ".." / "shared" / "data" / "nsmc"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kolm", action="store_true", help="use kolm's own GPT (tiny preset shape) instead of HF Llama")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from kolm.config import load_config
    from kolm.run import run_stage

    torch.set_num_threads(args.threads)
    with open(NSMC / "test.tsv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["document"].strip()][:3200]
    texts = [r["document"] for r in rows]
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts[:3000],
        trainers.BpeTrainer(
            vocab_size=4000,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if args.kolm:
        from kolm.models.registry import build_causal_lm

        model = build_causal_lm(load_config("tiny").model, len(hf_tok), bos_id=1, eos_id=2, pad_id=0)
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(hf_tok),
                hidden_size=128,
                intermediate_size=384,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=256,
                bos_token_id=1,
                eos_token_id=2,
                pad_token_id=0,
            )
        )
    print(f"model: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
    run_dir = tmp / "run"
    model.save_pretrained(run_dir / "pretrain" / "final")
    hf_tok.save_pretrained(run_dir / "pretrain" / "final")
    (run_dir / "data" / "validation").mkdir(parents=True)
    docs = [" ".join(texts[i : i + 8]) for i in range(0, 800, 8)]  # 100 documents of ~8 reviews
    pq.write_table(
        pa.table({"id": [str(i) for i in range(len(docs))], "text": docs, "source": ["nsmc"] * len(docs)}),
        run_dir / "data" / "validation" / "part-00000.parquet",
    )

    def jsonl(name: str, items: list[dict]) -> str:
        p = tmp / name
        p.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items), encoding="utf-8")
        return str(p)

    labelled = [{"text": r["document"], "label": int(r["label"])} for r in rows[3000:3200]]
    prompts = [
        {"id": str(i), "prompt": f"다음 리뷰를 요약하세요: {t}", "reference": t} for i, t in enumerate(texts[3100:3108])
    ]
    overrides = [
        "device=cpu",
        f"eval.fewshot_file={jsonl('test.jsonl', labelled[:100])}",
        f"eval.fewshot_pool={jsonl('train.jsonl', labelled[100:])}",
        f"eval.prompts_file={jsonl('prompts.jsonl', prompts)}",
    ]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides, run_dir=run_dir)
    t0 = time.perf_counter()
    result = run_stage(cfg, "eval", force=True)
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {"wall_s": round(wall, 1), "threads": args.threads, "metrics": result.metrics}, ensure_ascii=False, indent=1
        )
    )


if __name__ == "__main__":
    main()
