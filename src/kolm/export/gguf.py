"""`gguf`: a KolmGPT model as one GGUF file of llama architecture, for llama.cpp and Ollama.

Written directly with the `gguf` package's `GGUFWriter` (no detour through
llama.cpp's converter). What goes in, and why:

* Metadata under llama.cpp's `llama.*` keys: context length, width, depth,
  FFN width, heads and KV heads, rotary width and base, RMSNorm epsilon.
* Tensors under ggml's names: `token_embd`, `blk.N.attn_norm`, `blk.N.attn_q`
  ... `blk.N.ffn_down`, `output_norm`, and `output` only when the head is not
  tied to the embedding (llama.cpp reuses `token_embd` otherwise).
* q and k rows reordered: our rotary pairs dimension i with i + D/2 in each
  head (Hugging Face's "rotate half"); llama.cpp's llama graph rotates
  adjacent pairs (2i, 2i+1). Interleaving the two halves of every head's rows
  makes the same attention scores come out (`_interleave_heads`).
* The tokenizer as a `gpt2`-style byte-level BPE: tokens in the byte alphabet,
  merges as "a b" strings, a type per token (normal, control for special
  tokens, user-defined for other added tokens, unused for padding rows), the
  BOS/EOS/padding ids, whether BOS is prepended, and the chat template.
  Pre-tokenizer "gpt-2": the GPT-2 split regex our byte-level tokenizers use.
  The tokenizer's NFC normalizer has no GGUF field: llama.cpp tokenizes text
  as given, so feed it NFC text (Korean input methods produce NFC).
* Types: F32, F16, BF16, Q8_0 and Q4_0 (the ones gguf-py quantizes in
  numpy). 1-D tensors (norm gains) stay F32, as llama.cpp requires; a 2-D
  tensor whose rows are not a multiple of the 32-value block falls back to
  F16; in Q4_0 files the output head is Q8_0 (the head is the most sensitive
  matrix, and llama.cpp's own quantizer also keeps it at higher precision).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kolm.errors import KolmError

__all__ = ["TYPES", "DEFAULT_TYPE", "export_gguf", "gguf_file_name", "tensor_name"]

# quant name (what --quant takes) -> (GGMLQuantizationType name, LlamaFileType name)
TYPES: dict[str, tuple[str, str]] = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}
DEFAULT_TYPE = "q8_0"

# HF parameter name pieces -> ggml tensor name pieces (per block: model.layers.N.<hf> -> blk.N.<ggml>)
_BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# llama.cpp token types
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5


def gguf_file_name(quant: str) -> str:
    """File name of the GGUF written for quant type `quant` (model-Q8_0.gguf, ...)."""
    return f"model-{TYPES[quant][0]}.gguf"


def tensor_name(hf_name: str) -> str | None:
    """The ggml name of a Llama-layout parameter, or None for what GGUF does not store."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"] and len(parts) > 3:
        rest = ".".join(parts[3:])
        if rest in _BLOCK_NAMES:
            return f"blk.{parts[2]}.{_BLOCK_NAMES[rest]}"
    return None


def _interleave_heads(w: Any, n_heads: int) -> Any:
    """Reorder the rows of a q or k projection from rotate-half pairs to adjacent pairs, per head.

    w: (n_heads * D, C). Within a head, rows [0, D/2) and [D/2, D) are the two
    halves of each rotary pair; llama.cpp wants them interleaved:
    row order 0, D/2, 1, D/2 + 1, ...
    """
    rows, cols = w.shape
    d = rows // n_heads
    return w.reshape(n_heads, 2, d // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _tensor_type(ggml_name: str, shape: tuple[int, ...], quant: str) -> str:
    """The GGML type a tensor is stored in, for file type `quant`."""
    want = TYPES[quant][0]
    if len(shape) < 2:
        return "F32"
    if want in ("Q8_0", "Q4_0") and shape[-1] % 32:
        return "F16"  # rows not a whole number of 32-value blocks
    if want == "Q4_0" and ggml_name == "output.weight":
        return "Q8_0"
    return want


def _tokenizer_metadata(tokenizer: Any, vocab_size: int) -> dict[str, Any]:
    """Tokens, types and merges of a byte-level BPE tokenizer, padded to the model's `vocab_size` rows."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    pre = json.dumps(spec.get("pre_tokenizer"))
    if model.get("type") != "BPE" or "ByteLevel" not in pre:
        raise KolmError(
            f"GGUF export needs a byte-level BPE tokenizer (tokenizer.kind=bytelevel_bpe); this model's is "
            f"{model.get('type', 'unknown')}: export --format onnx or hf-llama instead"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t.content: (i, t.special) for i, t in tokenizer.added_tokens_decoder.items()}
    size = max(vocab_size, len(tokenizer))
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [_UNUSED] * size
    for text, i in vocab.items():
        if i < size:
            tokens[i], types[i] = text, _NORMAL
    for text, (i, special) in added.items():
        if i < size:
            tokens[i], types[i] = text, _CONTROL if special else _USER_DEFINED
    if size > vocab_size:
        raise KolmError(
            f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embedding rows; "
            "the tokenizer does not belong to this model"
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {
        "tokens": tokens,
        "types": types,
        "merges": merges,
        # kolm prepends BOS to every prompt (pretraining documents start with it), so llama.cpp must too.
        "add_bos": tokenizer.bos_token_id is not None,
        "chat_template": tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    }


def export_gguf(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (KolmGPT + tokenizer) as `out_dir/model-<TYPE>.gguf`; returns `out_dir`.

    `quant` is one of TYPES (default q8_0); `dtype` does not apply (the type is the file's).
    """
    import gguf
    import numpy as np
    import torch

    from kolm.models.loading import load_model

    quant = (quant or DEFAULT_TYPE).lower()
    if quant not in TYPES:
        raise KolmError(f"GGUF type {quant!r} is not written by kolm; choose one of {', '.join(TYPES)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model, tokenizer = load_model(model_dir, device="cpu", dtype="fp32")
    c = model.config
    tok = _tokenizer_metadata(tokenizer, c.vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / gguf_file_name(quant)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(model_dir.resolve().name if model_dir.name not in ("final", "model") else "kolm-gpt")
    w.add_file_type(int(getattr(gguf.LlamaFileType, TYPES[quant][1])))
    if quant in ("q8_0", "q4_0"):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.d_model)
    w.add_block_count(c.n_layers)
    w.add_feed_forward_length(c.ffn_dim)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(float(c.rope_theta))
    w.add_layer_norm_rms_eps(float(c.norm_eps))
    w.add_vocab_size(c.vocab_size)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    for key, value in (("bos", c.bos_token_id), ("eos", c.eos_token_id), ("pad", c.pad_token_id)):
        value = value[0] if isinstance(value, list) else value
        if value is not None:
            getattr(w, f"add_{key}_token_id")(int(value))
    w.add_add_bos_token(bool(tok["add_bos"]))
    w.add_add_eos_token(False)
    if tok["chat_template"]:
        w.add_chat_template(tok["chat_template"])

    state = model.state_dict()
    for hf_name, tensor in state.items():
        name = tensor_name(hf_name)
        if name is None or (name == "output.weight" and c.tie_word_embeddings):
            continue
        data = tensor.detach().to(torch.float32).numpy()  # (out, in) rows; ggml lists shapes innermost first
        if name.endswith("attn_q.weight"):
            data = _interleave_heads(data, c.n_heads)
        elif name.endswith("attn_k.weight"):
            data = _interleave_heads(data, c.n_kv_heads)
        kind = _tensor_type(name, data.shape, quant)
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        if kind == "F32":
            w.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        elif kind == "F16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_dir
