#!/usr/bin/env bash
# Run: bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: /tmp/gpu_check)
#
# Everything kolm checks on a CUDA machine, in one go and within 10 minutes:
#   1. every test marked `gpu` (pytest -m gpu): bf16 autocast, CUDA RNG in checkpoints, MFU,
#      FSDP2 with the bf16 policy (one process, NCCL), QLoRA, CUDA peak memory in fine-tuning; Mamba-2,
#      RWKV-7 and DeepSeek training (bf16, FSDP2) and decoding on CUDA, continuous batching on CUDA,
#      bitsandbytes LLM.int8/NF4 loading, vLLM on the hf-llama export (skipped where vLLM is missing);
#   2. the `base` preset's training throughput: `kolm pretrain --config base` for 30 steps (its model,
#      batch, accumulation, precision and torch.compile) on synthetic text over a 32,000-word vocabulary
#      (the preset's size), then tokens/s and MFU read from pretrain/metrics.jsonl.
#   2b. where the base preset's step spends its time: benchmarks/profile_train.py (GPU kernel time by category:
#      matmul, attention, fused/elementwise, optimizer, communication, memory; and the GPU's idle share);
#   3. the four architectures side by side (`kolm arch compare` at the `small` size): bf16 training tokens/s,
#      peak memory, and prefill/decode latency with cache sizes from 512 to 16,384 tokens of context.
# Writes into OUT_DIR: env.txt, pytest.log, pytest.xml, pretrain.log, base_run/ (the run directory),
# throughput.txt, base_throughput.json, profile.txt, profile.json, arch.log, arch/ (compare.{md,json,png}) and summary.txt. Exits non-zero
# when a test, the benchmark or the architecture comparison failed. ARCH_STEPS=N: steps per architecture (40;
# 0 skips the comparison).
# GPU_CHECK_STEPS=N changes the number of pretraining steps (more than 5: the first 5 are warm-up).
# PYTHON=... picks the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail

OUT=${1:-/tmp/gpu_check}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=${GPU_CHECK_STEPS:-30}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python
else PY=python3
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$REPO" || exit 2
"$PY" -c "import kolm" 2>/dev/null || export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# -- 0. the machine ------------------------------------------------------------------
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA DEVICE')"
} 2>&1 | tee "$OUT/env.txt"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; nothing to check" | tee "$OUT/summary.txt"
  exit 2
fi

# kolm's dependencies (pyproject.toml): name the missing ones up front, the checks below need most of them.
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/env.txt"
import importlib.util
names = ["torch", "transformers", "tokenizers", "datasets", "safetensors", "peft", "accelerate", "numpy", "pyarrow",
         "yaml", "typer", "rich", "matplotlib", "koreanize_matplotlib", "markdown", "kiwipiepy", "scipy", "sacrebleu",
         "rouge_score", "sklearn", "pytest", "pytest_timeout", "bitsandbytes"]
missing = [n for n in names if importlib.util.find_spec(n) is None]
print("missing packages: " + (", ".join(missing) if missing else "none")
      + (" (bitsandbytes is optional: the QLoRA test skips without it)" if "bitsandbytes" in missing else ""))
EOF

# -- 1. every gpu-marked test (at most 4 minutes) --------------------------------------
# Only the files that mark tests `gpu` are collected, so a package missing for an unrelated test cannot stop them.
mapfile -t GPU_FILES < <(grep -rlE --include='*.py' 'mark\.gpu' tests | sort)
echo "== pytest -m gpu ${GPU_FILES[*]}"
timeout 240 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml "$OUT/pytest.xml" "${GPU_FILES[@]}" 2>&1 \
  | tee "$OUT/pytest.log"
tests_rc=${PIPESTATUS[0]}

# -- 2. the base preset's tokens/s and MFU (at most 5.5 minutes) ------------------------
echo "== base preset: $STEPS pretraining steps"
RUN=$OUT/base_run
rm -rf "$RUN"
"$PY" - "$RUN" <<'EOF'
"""Synthetic curated data (Parquet, the data stage's layout) and a 32,000-word tokenizer for the base preset."""
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

run = Path(sys.argv[1])
specials = ["<pad>", "<s>", "</s>", "<unk>"]
words = [f"w{i:05d}" for i in range(32000 - len(specials))]
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                        unk_token="<unk>").save_pretrained(str(run / "tokenizer"))
rng = random.Random(0)
for split, docs in (("train", 4000), ("validation", 200)):  # ~2M and ~100k tokens
    texts = [" ".join(rng.choices(words, k=rng.randint(200, 800))) for _ in range(docs)]
    (run / "data" / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [f"{split}-{i}" for i in range(docs)], "text": texts, "source": ["synthetic"] * docs}),
                   run / "data" / split / "part-00000.parquet")
print(f"synthetic data and a {len(specials) + len(words):,}-token tokenizer in {run}")
EOF
prep_rc=$?
bench_rc=$prep_rc
if [ "$prep_rc" -eq 0 ]; then
  timeout 330 "$PY" -m kolm.cli.main pretrain --config base --run-dir "$RUN" device=cuda \
    "pretrain.max_steps=$STEPS" pretrain.warmup_steps=5 pretrain.log_every=1 pretrain.eval_every=0 \
    pretrain.eval_batches=4 pretrain.save_every=0 pretrain.sample_max_new_tokens=8 2>&1 | tee "$OUT/pretrain.log"
  bench_rc=${PIPESTATUS[0]}
fi
if [ "$bench_rc" -eq 0 ]; then
  "$PY" - "$RUN" "$OUT/base_throughput.json" <<'EOF' 2>&1 | tee "$OUT/throughput.txt"
"""tokens/s and MFU of the steady state (steps after the first 5: torch.compile and warm-up) from metrics.jsonl."""
import json
import statistics
import sys
from pathlib import Path

run, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = [json.loads(line) for line in (run / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
steady = [r for r in rows if r.get("step", 0) > 5 and "tok_per_s" in r] or rows
final = json.loads((run / "pretrain" / "final_metrics.json").read_text(encoding="utf-8"))
mfus = [r["mfu"] for r in steady if "mfu" in r]
result = {
    "preset": "base", "steps": final.get("steps"), "params": final.get("params"),
    "tok_per_s_median": statistics.median(r["tok_per_s"] for r in steady),
    "mfu_median": statistics.median(mfus) if mfus else None,
    "tok_per_s_whole_run": final.get("tok_per_s"), "peak_mem_mb": max(r.get("peak_mem_mb", 0) for r in rows),
    "last_loss": rows[-1].get("loss"), "steps_measured": [steady[0]["step"], steady[-1]["step"]],
}
out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
mfu = "n/a (GPU not in kolm.train.metrics._PEAK_BF16)" if result["mfu_median"] is None else f"{result['mfu_median']:.1%}"
print(f"base preset, {result['params'] / 1e6:.1f}M parameters: {result['tok_per_s_median']:,.0f} tokens/s, "
      f"MFU {mfu} (median of steps {result['steps_measured'][0]}-{result['steps_measured'][1]}); "
      f"whole run incl. compile {result['tok_per_s_whole_run']:,.0f} tokens/s; peak memory {result['peak_mem_mb']:,.0f} MB")
EOF
  bench_rc=${PIPESTATUS[0]}
fi

# -- 2b. the base preset's step, profiled (at most 2 minutes) ---------------------------
echo "== base preset: profile of one optimizer step"
timeout 120 "$PY" benchmarks/profile_train.py --preset base --device cuda --vocab 32000 --warmup 2 --steps 1 \
  --json "$OUT/profile.json" 2>&1 | tee "$OUT/profile.txt"
profile_rc=${PIPESTATUS[0]}

# -- 3. the architectures side by side on CUDA (at most 3 minutes) ---------------------
# `kolm arch compare`'s function on the same synthetic data and tokenizer: GPT, Mamba-2, RWKV-7 and DeepSeek
# (MoE + MLA) sized to the `small` preset's parameter count, ARCH_STEPS bf16 steps each, then prefill and
# decode latency at 512 to 16,384 tokens of context.
echo "== arch compare on CUDA"
arch_rc=1
if [ "${ARCH_STEPS:-40}" -eq 0 ]; then
  echo "skipped (ARCH_STEPS=0)" | tee "$OUT/arch.log"
  arch_rc=0
elif [ "$prep_rc" -eq 0 ]; then
  timeout 180 "$PY" - "$RUN" "$OUT/arch" "${ARCH_STEPS:-40}" <<'EOF' 2>&1 | tee "$OUT/arch.log"
import sys
from pathlib import Path

from kolm.config import load_config
from kolm.train.compare import compare_archs

run, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
overrides = ["device=cuda", "model.max_seq_len=512", f"pretrain.max_steps={steps}", "pretrain.batch_size=32", "pretrain.seq_len=512",
             "pretrain.warmup_steps=5", f"pretrain.eval_every={steps}", "pretrain.eval_batches=4",
             f"pretrain.save_every={steps}", "pretrain.log_every=5", "pretrain.precision=bf16", "pretrain.compile=false"]
cfg = load_config("small", overrides, run_dir=run)
compare_archs(cfg.model, cfg.pretrain, ["gpt", "mamba2", "rwkv7", "deepseek"], data_dir=run / "data",
              tokenizer_dir=run / "tokenizer", out=out, seed=0, device="cuda", lengths=(512, 2048, 8192, 16384),
              isolate=False)  # one process: a script on stdin cannot be re-imported by a spawned one
print((out / "compare.md").read_text(encoding="utf-8"))
EOF
  arch_rc=${PIPESTATUS[0]}
fi

# -- summary ---------------------------------------------------------------------------
{
  echo "gpu_check in $OUT"
  echo "tests: $(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)|no tests ran' "$OUT/pytest.log" | tail -1) (exit $tests_rc)"
  if [ "$bench_rc" -eq 0 ]; then echo "benchmark: $(tail -1 "$OUT/throughput.txt")"
  else echo "benchmark: FAILED (exit $bench_rc; see $OUT/pretrain.log)"
  fi
  if [ "$profile_rc" -eq 0 ]; then echo "profile: $(grep -m1 '^step ' "$OUT/profile.txt") (table in $OUT/profile.txt)"
  else echo "profile: FAILED (exit $profile_rc; see $OUT/profile.txt)"
  fi
  if [ "$arch_rc" -eq 0 ]; then echo "arch compare: $OUT/arch/compare.md"
  else echo "arch compare: FAILED (exit $arch_rc; see $OUT/arch.log)"
  fi
} | tee "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$profile_rc" -eq 0 ] && [ "$arch_rc" -eq 0 ]
