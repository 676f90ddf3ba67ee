"""`export --format gguf`: a llama GGUF that transformers reads back into our logits and tokenizer.

llama.cpp itself is the second reader: `pytest -m slow` runs it when
llama-cpp-python is installed (it builds from source in minutes; see
benchmarks/bench_quant.py).
"""

from __future__ import annotations

import pytest
import torch

gguf = pytest.importorskip("gguf", reason="GGUF export needs the gguf package (pip install kolm[quant])")

# Largest |logit difference| allowed, relative to the largest |logit|, per type (measured on the
# tiny model: f16 3e-4, bf16 3e-3, q8_0 8e-3, q4_0 1e-1). Q4_0 has 16 levels per 32-value block.
TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2, "q8_0": 3e-2, "q4_0": 0.25}


@pytest.fixture(scope="module")
def reference(model_dir):
    from kolm.models.loading import load_model

    model, tokenizer = load_model(model_dir)
    x = torch.randint(3, model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return x, model(x).logits, tokenizer


@pytest.mark.parametrize("quant", list(TOLERANCE))
def test_gguf_reads_back_in_transformers_within_the_types_tolerance(model_dir, tmp_path, reference, quant):
    from transformers import AutoModelForCausalLM

    from kolm.export import export_model
    from kolm.export.gguf import gguf_file_name

    out = export_model(model_dir, "gguf", tmp_path / "gguf", quant=quant)
    name = gguf_file_name(quant)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", name]
    llama = AutoModelForCausalLM.from_pretrained(out, gguf_file=name).eval()
    assert type(llama).__name__ == "LlamaForCausalLM"
    x, ref, _ = reference
    with torch.no_grad():
        logits = llama(x).logits
    rel = float((logits - ref).abs().max() / ref.abs().max())
    assert rel < TOLERANCE[quant], f"{quant}: relative logit error {rel:.2e}"
    if quant in ("f32", "f16", "bf16", "q8_0"):
        assert bool((logits.argmax(-1) == ref.argmax(-1)).float().mean() > 0.95)


def test_gguf_metadata_tensors_and_types(model_dir, tmp_path):
    from kolm.export.gguf import export_gguf, gguf_file_name

    export_gguf(model_dir, tmp_path, quant="q4_0")
    reader = gguf.GGUFReader(tmp_path / gguf_file_name("q4_0"))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 2 and field("llama.attention.head_count_kv") == 2
    assert field("llama.rope.dimension_count") == 8
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.ggml.bos_token_id") == 1 and field("tokenizer.ggml.eos_token_id") == 2
    assert "<|assistant|>" in field("tokenizer.chat_template")
    types = dict(zip(field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")))
    assert types["<|user|>"] == 3 and types["<s>"] == 3  # control tokens
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "Q4_0" and kinds["blk.0.attn_q.weight"] == "Q4_0"
    assert kinds["output.weight"] == "Q8_0"  # the head keeps 8 bits in a Q4_0 file
    assert kinds["blk.1.attn_norm.weight"] == "F32" and kinds["output_norm.weight"] == "F32"
    assert len(reader.tensors) == 2 + 9 * 2 + 1


def test_gguf_tokenizer_and_chat_template_round_trip(model_dir, tmp_path, reference):
    from transformers import AutoTokenizer

    from kolm.export.gguf import export_gguf, gguf_file_name

    export_gguf(model_dir, tmp_path, quant="f16")
    theirs = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf_file_name("f16"))
    ours = reference[2]
    for text in ["오늘은 날씨가 맑고 바람이 시원하다.", "<|user|>안녕 123<|end|>", " 서울의  봄\n꽃"]:
        assert theirs(text, add_special_tokens=False)["input_ids"] == ours(text)["input_ids"], text
        # Readers of the GGUF prepend BOS, as kolm's generation does with every prompt.
        assert theirs(text)["input_ids"] == [ours.bos_token_id] + ours(text)["input_ids"], text
    chat = [{"role": "user", "content": "안녕하세요"}]
    assert theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == ours.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    assert (theirs.bos_token, theirs.eos_token, theirs.pad_token) == ("<s>", "</s>", "<pad>")


def test_q_and_k_rows_are_interleaved_per_head():
    import numpy as np

    from kolm.export.gguf import _interleave_heads

    w = np.arange(2 * 8)[:, None].repeat(3, 1)  # 2 heads of 8 rows: pairs (0, 4), (1, 5), ... per head
    rows = _interleave_heads(w, 2)[:, 0].tolist()
    assert rows == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


@pytest.mark.slow
def test_llama_cpp_greedy_tokens_match_ours(model_dir, tmp_path, reference):
    llama_cpp = pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python (builds llama.cpp, minutes)")
    from kolm.export.gguf import export_gguf, gguf_file_name
    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.loading import load_model

    export_gguf(model_dir, tmp_path, quant="f32")
    llm = llama_cpp.Llama(str(tmp_path / gguf_file_name("f32")), n_ctx=64, n_threads=1, verbose=False, seed=0)
    model, tokenizer = load_model(model_dir)
    prompt = "오늘은 날씨가"
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    assert ids == [tokenizer.bos_token_id] + tokenizer(prompt)["input_ids"]
    theirs = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        theirs.append(token)
        if len(theirs) == 12:
            break
    mine = generate(model, tokenizer, [ids], SamplingParams(max_new_tokens=12, temperature=0, eos_token_ids=[]))
    assert theirs == mine[0].token_ids
