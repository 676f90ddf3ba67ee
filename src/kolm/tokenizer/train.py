"""Train Korean tokenizers with Hugging Face `tokenizers` and save them as AutoTokenizer directories.

Kinds:
- bytelevel_bpe: GPT-2 style byte-level BPE. Every string is encodable (no UNK)
  and `decode(encode(x)) == x` for NFC input.
- unigram / sp_bpe: SentencePiece-style (Metaspace "▁", byte fallback to
  `<0xNN>` pieces instead of UNK), trained with `tokenizers` rather than the
  `sentencepiece` package: same algorithms, one library, and the result is a
  `tokenizer.json` that AutoTokenizer loads without conversion.
- wordpiece: BERT style, for encoder experiments.
- morpheme_bpe: byte-level BPE trained on Kiwi pre-segmented text. During
  training a private-use marker is inserted at every Kiwi morpheme boundary
  inside an 어절 and the pre-tokenizer splits there, so no merge ever spans two
  morphemes (한국어|는, 흥미|롭|은). The saved tokenizer is a plain byte-level BPE:
  it loads with AutoTokenizer without kiwipiepy, encodes fast, stays exactly
  reversible, and its learned merges reproduce morpheme-like pieces. We chose
  this over kiwipiepy's own trainer (`kiwipiepy.sw_tokenizer`) because that
  one needs Kiwi at encode time, which every consumer (llama.cpp converter,
  TRL, vLLM) lacks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from kolm.errors import ConfigError

__all__ = [
    "SPECIAL_TOKENS",
    "CHAT_TOKENS",
    "CHAT_TEMPLATE",
    "train_tokenizer",
    "save_tokenizer",
    "kiwi_presegment",
    "get_kiwi",
]

CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", *CHAT_TOKENS]
# <s><|user|>\n안녕<|end|>\n<|assistant|>\n...<|end|>\n ; generation stops at <|end|> or </s>
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
_MORPH_MARK = "\ue000"  # private-use character: never in real text, removed by the training pre-tokenizer
_BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def _normalizer(name: str) -> Any:
    from tokenizers import normalizers

    return {"NFC": normalizers.NFC(), "NFKC": normalizers.NFKC(), "none": None}[name]


def _build(kind: str, cfg: Any) -> tuple[Any, Any]:
    """(Tokenizer, trainer) for `kind` with settings from a TokenizerConfig."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    digits = [pre_tokenizers.Digits(individual_digits=True)] if cfg.split_digits else []
    norm = _normalizer(cfg.normalization)
    if kind in ("bytelevel_bpe", "morpheme_bpe"):
        tok = Tokenizer(models.BPE())
        pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if kind == "morpheme_bpe":  # training only: split at the boundary marker first (see module docstring)
            pre = [pre_tokenizers.Split(Regex(_MORPH_MARK), behavior="removed")] + pre
        tok.pre_tokenizer = pre_tokenizers.Sequence(digits + pre)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind in ("unigram", "sp_bpe"):
        meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok = Tokenizer(models.Unigram() if kind == "unigram" else models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence(digits + [meta])
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        size = cfg.vocab_size - 256  # room for the 256 byte-fallback pieces appended after training
        if kind == "unigram":
            trainer = trainers.UnigramTrainer(
                vocab_size=size,
                special_tokens=SPECIAL_TOKENS,
                unk_token="<unk>",
                max_piece_length=8,
                show_progress=False,
            )
        else:
            trainer = trainers.BpeTrainer(
                vocab_size=size, min_frequency=cfg.min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
            )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(digits + [pre_tokenizers.BertPreTokenizer()])
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    if norm is not None:
        tok.normalizer = norm
    return tok, trainer


def _add_byte_fallback(tok: Any, kind: str) -> Any:
    """Append the 256 `<0xNN>` pieces as ordinary vocabulary (as Llama/SentencePiece do) and turn byte fallback on."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    model = data["model"]
    if kind == "unigram":
        have = {p for p, _ in model["vocab"]}
        floor = min(s for _, s in model["vocab"]) - 1.0
        model["vocab"] += [[b, floor] for b in _BYTE_TOKENS if b not in have]
    else:
        nxt = max(model["vocab"].values()) + 1
        for b in _BYTE_TOKENS:
            if b not in model["vocab"]:
                model["vocab"][b] = nxt
                nxt += 1
    model["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


_KIWI: list[Any] = []


def get_kiwi() -> Any:
    """One shared Kiwi analyser per process: loading its model takes 5-15 s, so training and comparison share it."""
    if not _KIWI:
        from kiwipiepy import Kiwi

        _KIWI.append(Kiwi(num_workers=-1))  # -1: all cores for batched tokenize()
    return _KIWI[0]


def kiwi_presegment(texts: Iterable[str]) -> Iterator[str]:
    """Insert the boundary marker at every Kiwi morpheme start inside an 어절 (text otherwise unchanged)."""
    kiwi = get_kiwi()
    buf = list(texts) if not isinstance(texts, list) else texts
    for text, tokens in zip(buf, kiwi.tokenize(buf)):
        cuts = sorted(
            {
                t.start
                for t in tokens
                if 0 < t.start < len(text) and not text[t.start - 1].isspace() and not text[t.start].isspace()
            }
        )
        if not cuts:
            yield text
            continue
        parts, prev = [], 0
        for c in cuts:
            parts.append(text[prev:c])
            prev = c
        parts.append(text[prev:])
        yield _MORPH_MARK.join(parts)


def train_tokenizer(kind: str, texts: list[str], cfg: Any) -> tuple[Any, dict[str, Any]]:
    """Train a `tokenizers.Tokenizer` of `kind` on `texts`; returns it and its training stats."""
    from tokenizers import pre_tokenizers

    t0 = time.perf_counter()
    tok, trainer = _build(kind, cfg)
    seg_s = 0.0
    train_texts: Iterable[str] = texts
    if kind == "morpheme_bpe":
        ts = time.perf_counter()
        train_texts = list(kiwi_presegment(texts))
        seg_s = time.perf_counter() - ts
    try:
        tok.train_from_iterator(train_texts, trainer=trainer, length=len(texts))
    except Exception as exc:  # the Rust trainer raises a bare Exception for settings the corpus cannot meet
        if "vocabulary is not large enough" in str(exc):
            chars = len({c for t in texts for c in t})
            raise ConfigError(
                f"tokenizer.vocab_size {cfg.vocab_size} is too small for a {kind} tokenizer of this "
                f"corpus ({chars:,} distinct characters); raise tokenizer.vocab_size"
            ) from None
        raise
    if kind == "morpheme_bpe":  # drop the training-only boundary split; the merges keep morphemes apart
        digits = [pre_tokenizers.Digits(individual_digits=True)] if cfg.split_digits else []
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            digits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
    if kind in ("unigram", "sp_bpe"):
        tok = _add_byte_fallback(tok, kind)
    stats = {
        "kind": kind,
        "vocab_size": tok.get_vocab_size(),
        "requested_vocab_size": cfg.vocab_size,
        "min_frequency": cfg.min_frequency,
        "normalization": cfg.normalization,
        "split_digits": cfg.split_digits,
        "train_docs": len(texts),
        "train_chars": sum(len(t) for t in texts),
        "train_time_s": round(time.perf_counter() - t0, 2),
        "kiwi_presegment_s": round(seg_s, 2),
        "special_tokens": SPECIAL_TOKENS,
        "byte_level": kind in ("bytelevel_bpe", "morpheme_bpe"),
    }
    return tok, stats


def save_tokenizer(tok: Any, out: Path, stats: dict[str, Any]) -> Path:
    """Save as an AutoTokenizer directory (PreTrainedTokenizerFast + chat template) with stats.json."""
    from transformers import PreTrainedTokenizerFast

    from kolm.files import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=CHAT_TOKENS,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    write_json(out / "stats.json", stats)
    return out
