"""Fine-tuning data readers on small files in the official formats, and their error messages."""

from __future__ import annotations

import json

import pytest

from kolm.errors import DataError
from kolm.finetune.config import TaskDataConfig
from kolm.finetune.data import encode_sft, load_classification, load_sft, to_messages


def _tsv(path, rows):
    path.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{l}\n" for i, t, l in rows), encoding="utf-8")
    return path


def test_nsmc_tsv_reader(tmp_path):
    rows = [(i, f"리뷰 {i} 정말 {'좋다' if i % 2 else '별로다'}", i % 2) for i in range(20)]
    train = _tsv(tmp_path / "train.tsv", rows)
    test = _tsv(tmp_path / "test.tsv", rows[:4])
    data = load_classification(TaskDataConfig(kind="nsmc", train=str(train), test=str(test)), seed=1)
    assert data.labels == ["부정", "긍정"]
    assert len(data.train) + len(data.validation) == 20 and len(data.test) == 4
    assert ("리뷰 1 정말 좋다", 1) in data.train + data.validation


def test_klue_ynat_and_nli_json(tmp_path):
    ynat = [{"guid": f"y{i}", "title": f"제목 {i}", "label": ["정치", "경제", "사회"][i % 3]} for i in range(9)]
    (tmp_path / "ynat.json").write_text(json.dumps(ynat, ensure_ascii=False), encoding="utf-8")
    data = load_classification(TaskDataConfig(kind="klue-ynat", train=str(tmp_path / "ynat.json")))
    assert data.labels == ["경제", "사회", "정치"]
    nli = [{"guid": "n1", "premise": "비가 온다.", "hypothesis": "날씨가 맑다.", "gold_label": "contradiction"}] * 4
    (tmp_path / "nli.json").write_text(json.dumps(nli, ensure_ascii=False), encoding="utf-8")
    data = load_classification(TaskDataConfig(kind="klue-nli", train=str(tmp_path / "nli.json")))
    assert data.labels == ["entailment", "neutral", "contradiction"]
    assert data.train[0] == ("전제: 비가 온다.\n가설: 날씨가 맑다.", 2)


def test_labels_outside_declared_set(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"문장 {i}", "label": lab}) for i, lab in enumerate(["pos", "neg", "meh"])), encoding="utf-8")
    with pytest.raises(DataError, match="1 label\\(s\\) outside the declared set \\['pos', 'neg'\\]"):
        load_classification(TaskDataConfig(kind="file", train=str(f), labels=["pos", "neg"]))


def test_missing_text_column_names_the_columns(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"sentence": "문장", "label": 1}), encoding="utf-8")
    with pytest.raises(DataError, match="column 'text' not found; columns are \\['label', 'sentence'\\]"):
        load_classification(TaskDataConfig(kind="file", train=str(f)))


def test_empty_validation_split(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "하나뿐", "label": 1}), encoding="utf-8")
    empty = tmp_path / "v.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="holds no examples"):
        load_classification(TaskDataConfig(kind="file", train=str(f), validation=str(empty)))


def test_non_utf8_file(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes("id\tdocument\tlabel\n1\t한국어\t1\n".encode("cp949"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_classification(TaskDataConfig(kind="nsmc", train=str(f)))


def test_alpaca_and_messages_formats(tmp_path):
    assert to_messages({"instruction": "번역하세요", "input": "hello", "output": "안녕"}) == [
        {"role": "user", "content": "번역하세요\n\nhello"},
        {"role": "assistant", "content": "안녕"},
    ]
    chat = {"messages": [{"role": "system", "content": "친절하게"}, {"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요!"}]}
    assert to_messages(chat)[-1]["content"] == "안녕하세요!"
    f = tmp_path / "alpaca.json"
    f.write_text(json.dumps([{"instruction": f"질문 {i}", "input": "", "output": f"답 {i}"} for i in range(10)], ensure_ascii=False), encoding="utf-8")
    train, val = load_sft(TaskDataConfig(kind="file", train=str(f)))
    assert len(train) == 9 and len(val) == 1


def test_sft_labels_cover_only_the_answer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"])}
    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=[], unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    from tokenizers import trainers

    tok.train_from_iterator(["질문 답 안녕하세요"], trainers.BpeTrainer(vocab_size=300, special_tokens=list(vocab), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", bos_token="<s>")
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    rows = encode_sft(fast, [[{"role": "user", "content": "질문"}, {"role": "assistant", "content": "답"}]], seq_len=64)
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    answer = [t for t, l in zip(ids, labels) if l != -100]
    assert fast.decode(answer) == "답<|end|>"
    assert labels[: len(ids) - len(answer)] == [-100] * (len(ids) - len(answer))
