"""Task-data readers on small files in the official formats, their error messages, and batch encoding."""

from __future__ import annotations

import gzip
import json

import pytest

from kolm.data.batching import collate, encode_classification, encode_for_classifier, encode_sft, pad_rows, pad_token_id
from kolm.data.tasks import (
    TaskDataConfig,
    load_classification,
    load_sft,
    read_labelled,
    read_preferences,
    read_prompts,
    read_records,
    read_split_texts,
    read_texts,
    to_messages,
)
from kolm.errors import DataError


def _tsv(path, rows):
    path.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{lab}\n" for i, t, lab in rows), encoding="utf-8")
    return path


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------
# Records


def test_one_record_reader_for_every_format(tmp_path):
    rows = [{"text": "첫째", "label": "1"}, {"text": "둘째", "label": "0"}]
    _jsonl(tmp_path / "a.jsonl", rows)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "a.tsv").write_text("text\tlabel\n첫째\t1\n둘째\t0\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("text,label\n첫째,1\n둘째,0\n", encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["첫째", "둘째"], "label": ["1", "0"]}), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.jsonl.gz", "a.json", "a.tsv", "a.csv", "a.parquet"):
        assert read_records(tmp_path / name) == rows, name


def test_record_reader_names_the_broken_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "좋다", "label": 1}\n{"text": broken\n', encoding="utf-8")
    with pytest.raises(DataError, match="d.jsonl: line 2 is not valid JSON"):
        read_records(f)
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_records(tmp_path / "d.xlsx")


# ----------------------------------------------------------------------------
# Classification


def test_nsmc_tsv_reader(tmp_path):
    rows = [(i, f"리뷰 {i} 정말 {'좋다' if i % 2 else '별로다'}", i % 2) for i in range(20)]
    train = _tsv(tmp_path / "train.tsv", rows)
    test = _tsv(tmp_path / "test.tsv", rows[:4])
    data = load_classification(TaskDataConfig(kind="nsmc", train=str(train), test=str(test)), seed=1)
    assert data.labels == ["부정", "긍정"]
    assert len(data.train) + len(data.validation) == 20 and len(data.test) == 4
    assert ("리뷰 1 정말 좋다", 1) in data.train + data.validation
    assert data.test == [
        ("리뷰 0 정말 별로다", 0),
        ("리뷰 1 정말 좋다", 1),
        ("리뷰 2 정말 별로다", 0),
        ("리뷰 3 정말 좋다", 1),
    ]


def test_nsmc_official_txt_name_and_bare_quotes(tmp_path):
    # NSMC ships ratings_train.txt, tab-separated, with unbalanced quotes inside reviews
    f = tmp_path / "ratings_train.txt"
    f.write_text(
        'id\tdocument\tlabel\n1\t"최고" 라는 말이 아깝다\t0\n2\t정말 좋다\t1\n3\t재밌다"\t1\n', encoding="utf-8"
    )
    data = load_classification(TaskDataConfig(kind="nsmc", train=str(f), val_fraction=0.3), seed=0)
    assert sorted(data.train + data.validation) == [('"최고" 라는 말이 아깝다', 0), ('재밌다"', 1), ("정말 좋다", 1)]


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


def test_embedded_reviews():
    data = load_classification(TaskDataConfig(), seed=0)
    assert data.labels == ["부정", "긍정"]
    assert (len(data.train), len(data.validation), len(data.test)) == (486, 54, 136)  # 540 train rows, 10% held out
    assert {lab for _, lab in data.train} == {0, 1}


def test_labels_outside_declared_set(tmp_path):
    f = _jsonl(
        tmp_path / "d.jsonl", [{"text": f"문장 {i}", "label": lab} for i, lab in enumerate(["pos", "neg", "meh"])]
    )
    with pytest.raises(DataError, match="1 label\\(s\\) outside the declared set \\['pos', 'neg'\\]"):
        load_classification(TaskDataConfig(kind="file", train=str(f), labels=["pos", "neg"]))


def test_missing_text_column_names_the_columns(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"sentence": "문장", "label": 1}), encoding="utf-8")
    with pytest.raises(
        DataError, match="column 'text' not found; columns are \\['label', 'sentence'\\]; set finetune.classify"
    ):
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
    with pytest.raises(DataError, match="line 2 is not UTF-8"):
        load_classification(TaskDataConfig(kind="nsmc", train=str(f)))


def test_read_labelled_names_indices_and_errors(tmp_path):
    f = tmp_path / "nsmc.tsv"
    f.write_text("id\tdocument\tlabel\n1\t좋아요\t1\n2\t별로\t0\n", encoding="utf-8")
    pairs, names = read_labelled(f, ["부정", "긍정"], "document", "label")
    assert pairs == [("좋아요", "긍정"), ("별로", "부정")] and names == ["부정", "긍정"]
    pairs, names = read_labelled(f, None, "document", "label")  # undeclared: the sorted labels found
    assert pairs == [("좋아요", "1"), ("별로", "0")] and names == ["0", "1"]
    with pytest.raises(DataError, match="column 'text' not found"):
        read_labelled(f, ["부정", "긍정"])
    with pytest.raises(DataError, match="outside the declared set"):
        read_labelled(f, ["yes"], "document", "label")


# ----------------------------------------------------------------------------
# Chats


def test_alpaca_and_messages_formats(tmp_path):
    assert to_messages({"instruction": "번역하세요", "input": "hello", "output": "안녕"}) == [
        {"role": "user", "content": "번역하세요\n\nhello"},
        {"role": "assistant", "content": "안녕"},
    ]
    chat = {
        "messages": [
            {"role": "system", "content": "친절하게"},
            {"role": "user", "content": "안녕?"},
            {"role": "assistant", "content": "안녕하세요!"},
        ]
    }
    assert to_messages(chat)[-1]["content"] == "안녕하세요!"
    with pytest.raises(DataError, match="end with an assistant message"):
        to_messages({"messages": [{"role": "user", "content": "안녕?"}]})
    f = tmp_path / "alpaca.json"
    f.write_text(
        json.dumps(
            [{"instruction": f"질문 {i}", "input": "", "output": f"답 {i}"} for i in range(10)], ensure_ascii=False
        ),
        encoding="utf-8",
    )
    train, val = load_sft(TaskDataConfig(kind="file", train=str(f)))
    assert len(train) == 9 and len(val) == 1
    assert sorted(c[0]["content"] for c in train + val) == sorted(f"질문 {i}" for i in range(10))


def test_bad_validation_chat_names_the_row(tmp_path):
    train = _jsonl(tmp_path / "t.jsonl", [{"instruction": f"질문 {i}", "output": f"답 {i}"} for i in range(3)])
    val = _jsonl(tmp_path / "v.jsonl", [{"instruction": "질문", "output": "답"}, {"instruction": "답이 없다"}])
    with pytest.raises(DataError, match="v.jsonl: row 2: an instruction example needs"):
        load_sft(TaskDataConfig(kind="file", train=str(train), validation=str(val)))


# ----------------------------------------------------------------------------
# Preference pairs


def test_embedded_preferences():
    prefs = read_preferences()
    assert len(prefs) == 112 and prefs[0].id == "pref-001"
    assert all(not p.is_chat and p.prompt and p.chosen and p.rejected and p.chosen != p.rejected for p in prefs)


def test_preferences_text_and_chat_forms(tmp_path):
    user = [{"role": "user", "content": "서울은 어느 나라의 수도인가요?"}]
    rows = [
        {"prompt": "한국의 수도는?", "chosen": "서울입니다.", "rejected": "부산입니다."},
        {"prompt": user, "chosen": [{"role": "assistant", "content": "대한민국입니다."}], "rejected": "일본입니다."},
        {
            "chosen": user + [{"role": "assistant", "content": "대한민국입니다."}],
            "rejected": user + [{"role": "assistant", "content": "모릅니다."}],
        },
    ]
    text, chat, implicit = read_preferences(_jsonl(tmp_path / "p.jsonl", rows))
    assert (text.prompt, text.chosen, text.rejected, text.is_chat) == (
        "한국의 수도는?",
        "서울입니다.",
        "부산입니다.",
        False,
    )
    assert chat.is_chat and chat.prompt == user and chat.rejected == [{"role": "assistant", "content": "일본입니다."}]
    assert implicit.prompt == user and implicit.chosen == [{"role": "assistant", "content": "대한민국입니다."}]


def test_preferences_reject_bad_rows(tmp_path):
    same = _jsonl(
        tmp_path / "same.jsonl",
        [
            {"prompt": "질문", "chosen": "답", "rejected": "다른 답"},
            {"prompt": "질문", "chosen": "같은 답", "rejected": " 같은 답 "},
        ],
    )
    with pytest.raises(DataError, match="same.jsonl: row 2: 'chosen' and 'rejected' are identical"):
        read_preferences(same)
    missing = _jsonl(tmp_path / "missing.jsonl", [{"prompt": "질문", "chosen": "답"}])
    with pytest.raises(DataError, match="missing.jsonl: row 1: missing or empty 'rejected'"):
        read_preferences(missing)


# ----------------------------------------------------------------------------
# Prompts and held-out text


def test_prompts_and_texts(tmp_path):
    prompts = read_prompts()
    assert len(prompts) == 48 and prompts[0]["id"] == "ep-001" and prompts[0]["reference"]
    txt = tmp_path / "held.txt"
    txt.write_text("첫 문장\n\n  둘째 문장  \n", encoding="utf-8")
    assert read_texts(txt) == ["첫 문장", "둘째 문장"]
    assert read_texts(_jsonl(tmp_path / "h.jsonl", [{"body": "본문"}, {"body": ""}]), "body") == ["본문"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data" / "validation").mkdir(parents=True)
    pq.write_table(
        pa.table({"text": ["검증 문서", None, " "]}), tmp_path / "data" / "validation" / "part-00000.parquet"
    )
    assert read_split_texts(tmp_path / "data") == ["검증 문서"]
    with pytest.raises(DataError, match="the test split .* is empty"):
        read_split_texts(tmp_path / "data", "test")


# ----------------------------------------------------------------------------
# Batches


class _Tok:
    """Character-level stand-in tokenizer: ids are code points, EOS 2, pad 0."""

    pad_token_id, eos_token_id = 0, 2

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def test_classifier_encoding_and_left_padding():
    tok = _Tok()
    assert encode_for_classifier(tok, "가나다라", 3) == [ord("가"), ord("나"), 2]  # cut to max_length - 1, then EOS
    rows = encode_classification(tok, [("가", 1), ("가나다", 0)], 8)
    batch = collate(rows, pad_token_id(tok), left=True)
    assert batch["input_ids"].tolist() == [[0, 0, ord("가"), 2], [ord("가"), ord("나"), ord("다"), 2]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]


def test_token_labels_pad_with_ignore_index_on_the_right():
    batch = collate(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}], 0, left=False
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    ids, mask = pad_rows([[1], [1, 2]], 9, left=False)
    assert ids.tolist() == [[1, 9], [1, 2]] and mask.tolist() == [[1, 0], [1, 1]]


def test_pad_id_falls_back_to_eos_then_zero():
    class NoPad:
        pad_token_id, eos_token_id = None, 7

    class Nothing:
        pad_token_id, eos_token_id = None, None

    assert pad_token_id(_Tok()) == 0 and pad_token_id(NoPad()) == 7 and pad_token_id(Nothing()) == 0


def test_sft_labels_cover_only_the_answer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"])}
    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=[], unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["질문 답 안녕하세요"],
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=list(vocab), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", bos_token="<s>")
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    rows = encode_sft(fast, [[{"role": "user", "content": "질문"}, {"role": "assistant", "content": "답"}]], seq_len=64)
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    answer = [t for t, lab in zip(ids, labels) if lab != -100]
    assert fast.decode(answer) == "답<|end|>"
    assert labels[: len(ids) - len(answer)] == [-100] * (len(ids) - len(answer))
