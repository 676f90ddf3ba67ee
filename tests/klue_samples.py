"""Small hand-made KLUE files in the exact official formats (v1.1), and a tiny HF Llama dir to fine-tune.

Imported by the KLUE tests of tests/data, tests/metrics, tests/finetune and tests/evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

STS = [
    ("오늘 서울 날씨가 맑다.", "서울은 오늘 맑은 날씨다.", 4.6, 4.571, 1),
    ("이 영화는 정말 재미있었다.", "영화가 아주 재미있었다.", 4.0, 3.971, 1),
    ("도서관에서 책을 빌렸다.", "저녁에 김치찌개를 먹었다.", 0.2, 0.214, 0),
    ("배우들의 연기가 좋았다.", "연기가 훌륭한 배우들이었다.", 3.4, 3.428, 1),
    ("한국어 모델을 만든다.", "바람이 시원하게 분다.", 0.0, 0.0, 0),
    ("봄에는 꽃이 핀다.", "봄이 오면 꽃이 많이 핀다.", 3.8, 3.8, 1),
    ("주말에 산에 갔다.", "평일에 바다에 갔다.", 1.4, 1.428, 0),
    ("가족과 저녁을 먹었다.", "가족이 함께 저녁 식사를 했다.", 4.2, 4.2, 1),
]

# (sentence with <entity:TYPE> marks): the header KLUE writes, from which the character tags follow.
NER = [
    "<이순신:PS>은 <조선:LC>의 장군이다.",
    "<삼성전자:OG>는 <3월 2일:DT>에 발표했다.",
    "<서울:LC>에서 <오후 3시:TI>에 만났다.",
    "사과 <세 개:QT>를 샀다.",
    "<김철수:PS>와 <영희:PS>가 <부산:LC>에 갔다.",
    "오늘은 비가 온다.",
]

MRC_CONTEXT = (
    "이순신은 조선 중기의 무신이다. 임진왜란 때 수군을 이끌고 여러 해전에서 승리했다. "
    "그는 한산도 대첩에서 학익진을 펼쳐 큰 승리를 거두었다. 세종대왕은 훈민정음을 창제하였다."
)


def ner_lines(marked: str) -> tuple[str, list[tuple[str, str]]]:
    """The plain sentence and its (character, tag) lines from a `<word:TYPE>` marked sentence."""
    import re

    chars: list[tuple[str, str]] = []
    pos = 0
    for m in re.finditer(r"<([^<>:]+):([A-Z]{2})>", marked):
        chars += [(c, "O") for c in marked[pos : m.start()]]
        word, kind = m.group(1), m.group(2)
        chars += [(c, ("B-" if i == 0 else "I-") + kind) for i, c in enumerate(word)]
        pos = m.end()
    chars += [(c, "O") for c in marked[pos:]]
    return "".join(c for c, _ in chars), chars


def write_sts(path: Path, rows=STS) -> Path:
    data = [
        {
            "guid": f"klue-sts-v1_dev_{i:05d}",
            "source": "airbnb-rtt",
            "sentence1": a,
            "sentence2": b,
            "labels": {"label": lab, "real-label": real, "binary-label": binary},
        }
        for i, (a, b, lab, real, binary) in enumerate(rows)
    ]
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_ner(path: Path, rows=NER) -> Path:
    blocks = []
    for i, marked in enumerate(rows):
        _, chars = ner_lines(marked)
        lines = [f"## klue-ner-v1_dev_{i:05d}_news\t{marked}"] + [f"{c}\t{t}" for c, t in chars]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def mrc_answer(text: str) -> dict:
    return {"text": text, "answer_start": MRC_CONTEXT.index(text)}


def write_mrc(path: Path) -> Path:
    qas = [
        ("이순신은 어느 시대의 무신인가?", [mrc_answer("조선 중기")], False, []),
        ("한산도 대첩에서 펼친 진법은?", [mrc_answer("학익진")], False, []),
        ("훈민정음을 창제한 사람은?", [mrc_answer("세종대왕")], False, []),
        ("이순신이 태어난 해는?", [], True, [mrc_answer("조선 중기")]),
    ]
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "이순신",
                "source": "wikipedia",
                "paragraphs": [
                    {
                        "context": MRC_CONTEXT,
                        "qas": [
                            {
                                "question": q,
                                "answers": answers,
                                "question_type": 1,
                                "is_impossible": impossible,
                                "plausible_answers": plausible,
                                "guid": f"klue-mrc-v1_dev_{i:05d}",
                            }
                            for i, (q, answers, impossible, plausible) in enumerate(qas)
                        ],
                    }
                ],
            }
        ],
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


RE = [
    ("이순신은 조선의 장군이다.", "이순신", "PER", "조선", "ORG", "per:employee_of"),
    ("삼성전자는 수원에 본사가 있다.", "삼성전자", "ORG", "수원", "LOC", "org:place_of_headquarters"),
    ("김철수는 영희와 결혼했다.", "김철수", "PER", "영희", "PER", "per:spouse"),
    ("서울에서 부산까지 기차를 탔다.", "서울", "LOC", "부산", "LOC", "no_relation"),
    ("세종대왕은 1397년에 태어났다.", "세종대왕", "PER", "1397년", "DAT", "per:date_of_birth"),
    ("영희는 한국대학교를 졸업했다.", "영희", "PER", "한국대학교", "ORG", "per:schools_attended"),
]


def entity(sentence: str, word: str, kind: str) -> dict:
    start = sentence.index(word)
    return {"word": word, "start_idx": start, "end_idx": start + len(word) - 1, "type": kind}


def write_re(path: Path, rows=RE) -> Path:
    data = [
        {
            "guid": f"klue-re-v1_dev_{i:05d}",
            "sentence": s,
            "subject_entity": entity(s, sw, st),
            "object_entity": entity(s, ow, ot),
            "label": label,
            "source": "wikipedia",
        }
        for i, (s, sw, st, ow, ot, label) in enumerate(rows)
    ]
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_klue_dir(folder: Path) -> Path:
    """Train and dev files of STS, NER, MRC and RE under their official names."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        write_sts(folder / f"klue-sts-v1.1_{split}.json")
        write_ner(folder / f"klue-ner-v1.1_{split}.tsv")
        write_mrc(folder / f"klue-mrc-v1.1_{split}.json")
        write_re(folder / f"klue-re-v1.1_{split}.json")
    return folder


def texts() -> list[str]:
    return [a + " " + b for a, b, *_ in STS] + [ner_lines(m)[0] for m in NER] + [MRC_CONTEXT] + [r[0] for r in RE]


def build_llama_dir(folder: Path) -> Path:
    """A tiny `LlamaForCausalLM` with a byte-level BPE tokenizer trained on the sample texts (no network)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts() * 2, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


YNAT = [
    ("삼성전자 새 스마트폰 공개", "IT과학"),
    ("프로야구 개막전 매진", "스포츠"),
    ("코스피 상승 마감", "경제"),
    ("대통령 국회 연설", "정치"),
    ("주말 나들이 인파", "생활문화"),
    ("유럽 폭염 계속", "세계"),
    ("인공지능 반도체 개발", "IT과학"),
    ("월드컵 예선 승리", "스포츠"),
]


def write_ynat(path: Path) -> Path:
    data = [
        {"guid": f"ynat-v1_dev_{i:05d}", "title": t, "label": lab, "url": "https://example.com", "date": "2016.06.30"}
        for i, (t, lab) in enumerate(YNAT)
    ]
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
