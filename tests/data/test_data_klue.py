"""KLUE readers on hand-made files in the official formats; encodings that align characters, tokens and windows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import klue_samples as ks  # noqa: E402
from kolm.data.klue import (  # noqa: E402
    NER_TAGS,
    RE_LABELS,
    KlueDataConfig,
    MrcExample,
    NerSentence,
    official_file,
    read_klue_mrc,
    read_klue_ner,
    read_klue_re,
    read_klue_sts,
)
from kolm.data.klue_batch import (  # noqa: E402
    MrcWindow,
    best_answer,
    encode_mrc,
    encode_ner,
    mark_entities,
    token_tags_to_chars,
)
from kolm.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = ks.build_llama_dir(tmp_path_factory.mktemp("llama"))
    return AutoTokenizer.from_pretrained(folder)


def test_sts_reader_takes_label_and_binary_label(tmp_path):
    ex = read_klue_sts(ks.write_sts(tmp_path / "klue-sts-v1.1_dev.json"))
    assert len(ex) == len(ks.STS)
    assert (ex[0].sentence1, ex[0].score, ex[0].binary) == ("오늘 서울 날씨가 맑다.", 4.6, 1)
    assert [e.binary for e in ex] == [row[4] for row in ks.STS]


def test_ner_reader_keeps_spaces_as_characters(tmp_path):
    sents = read_klue_ner(ks.write_ner(tmp_path / "ner.tsv"))
    assert len(sents) == len(ks.NER)
    first = sents[0]
    assert first.id == "klue-ner-v1_dev_00000_news"
    assert first.chars == "이순신은 조선의 장군이다."
    assert first.tags[:5] == ["B-PS", "I-PS", "I-PS", "O", "O"]  # the space after 은 is a character with O
    assert first.tags[5:7] == ["B-LC", "I-LC"]
    assert all(len(s.chars) == len(s.tags) for s in sents)


def test_mrc_reader_answers_and_unanswerable(tmp_path):
    ex = read_klue_mrc(ks.write_mrc(tmp_path / "mrc.json"))
    assert [e.is_impossible for e in ex] == [False, False, False, True]
    assert ex[1].answers == [("학익진", ks.MRC_CONTEXT.index("학익진"))]
    assert ex[3].answers == [] and ex[3].plausible == [("조선 중기", ks.MRC_CONTEXT.index("조선 중기"))]
    assert ex[0].id == "klue-mrc-v1_dev_00000"


def test_re_reader_and_entity_markers(tmp_path):
    ex = read_klue_re(ks.write_re(tmp_path / "re.json"))
    assert ex[0].label == RE_LABELS.index("per:employee_of")
    assert (ex[0].subject.word, ex[0].subject.start, ex[0].subject.end) == ("이순신", 0, 2)
    assert mark_entities(ex[0]) == "@ *PER* 이순신 @은 # ^ORG^ 조선 #의 장군이다."
    # object before subject: offsets stay right whichever comes first
    ex[0].subject, ex[0].object = ex[0].object, ex[0].subject
    assert mark_entities(ex[0]) == "# ^PER^ 이순신 #은 @ *ORG* 조선 @의 장군이다."


def test_official_names_and_per_task_overrides(tmp_path):
    assert official_file(tmp_path, "klue-ner", "validation").name == "klue-ner-v1.1_dev.tsv"
    cfg = KlueDataConfig(dir=str(tmp_path))
    assert cfg.files("klue-mrc", "train") == tmp_path / "klue-mrc-v1.1_train.json"
    assert cfg.files("klue-re", "test") is None
    cfg.re.validation = "x.json"
    assert cfg.files("klue-re", "validation") == Path("x.json")


# ----------------------------------------------------------------------------
# Bad input: one line naming the file and the row


def _one_line(exc: pytest.ExceptionInfo, path: Path, where: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and where in text, text


def test_file_of_another_task(tmp_path):
    re_file = ks.write_re(tmp_path / "re.json")
    with pytest.raises(DataError) as exc:
        read_klue_sts(re_file)
    _one_line(exc, re_file, "row 1")
    assert "KLUE-RE" in str(exc.value)
    with pytest.raises(DataError) as exc:
        read_klue_mrc(re_file)
    assert "KLUE-RE" in str(exc.value) and str(re_file) in str(exc.value)
    with pytest.raises(DataError) as exc:
        read_klue_ner(re_file)
    assert ".json" in str(exc.value)
    sts_as_tsv = tmp_path / "sts.tsv"
    sts_as_tsv.write_text(ks.write_sts(tmp_path / "s.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_klue_ner(sts_as_tsv)
    _one_line(exc, sts_as_tsv, "line 1")


def test_entity_offsets_that_do_not_match_the_sentence(tmp_path):
    path = ks.write_re(tmp_path / "re.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data[2]["object_entity"]["start_idx"] += 1
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_klue_re(path)
    _one_line(exc, path, "row 3")
    assert "object_entity" in str(exc.value)


def test_relation_outside_the_label_set(tmp_path):
    path = ks.write_re(tmp_path / "re.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data[1]["label"] = "org:friend_of"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_klue_re(path)
    _one_line(exc, path, "row 2")


def test_tag_outside_the_bio_set(tmp_path):
    path = ks.write_ner(tmp_path / "ner.tsv")
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[3] = lines[3].replace("I-PS", "I-PER")
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_klue_ner(path)
    _one_line(exc, path, "line 4")
    assert "'I-PER'" in str(exc.value)


def test_answer_offset_beyond_the_context(tmp_path):
    path = ks.write_mrc(tmp_path / "mrc.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["data"][0]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] = len(ks.MRC_CONTEXT) + 5
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_klue_mrc(path)
    _one_line(exc, path, "qas[3]")
    assert "beyond" in str(exc.value)
    data["data"][0]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] = 3  # inside, but another text
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match="does not match the context"):
        read_klue_mrc(path)


def test_sts_score_outside_0_to_5(tmp_path):
    path = ks.write_sts(tmp_path / "sts.json", [("가", "나", 5.5, 5.5, 1)])
    with pytest.raises(DataError) as exc:
        read_klue_sts(path)
    _one_line(exc, path, "row 1")


# ----------------------------------------------------------------------------
# Encodings


def test_ner_labels_follow_token_offsets_and_come_back_to_characters(tok):
    text, pairs = ks.ner_lines("<이순신:PS>은 <조선:LC>의 장군이다.")
    s = NerSentence("x", text, [t for _, t in pairs])
    (row,) = encode_ner(tok, [s], NER_TAGS, 64)
    assert row["labels"][0] == -100 and row["input_ids"][0] == tok.bos_token_id  # BOS
    for span, label in zip(row["spans"][1:], row["labels"][1:]):
        if label != -100:  # a token takes the tag of its first non-space character
            first = span[0] + (1 if s.chars[span[0]].isspace() and span[1] - span[0] > 1 else 0)
            assert NER_TAGS[label] == s.tags[first]
    token_tags = [NER_TAGS[x] if x != -100 else "O" for x in row["labels"]]
    assert token_tags_to_chars(s.chars, row["spans"], token_tags)[:3] == ["B-PS", "I-PS", "I-PS"]


def test_token_tags_to_chars_hand_case():
    text = "서울 시청"
    spans = [None, (0, 2), (2, 5)]  # BOS, "서울", " 시청" (a byte-level token carries its space)
    assert token_tags_to_chars(text, spans, ["O", "B-LC", "B-OG"]) == ["B-LC", "I-LC", "O", "B-OG", "I-OG"]
    assert token_tags_to_chars(text, spans[:2], ["O", "O"]) == ["O"] * 5  # uncovered characters are O


def test_mrc_windows_label_an_answer_only_where_it_lies_whole(tok):
    context = ks.MRC_CONTEXT
    ans = "학익진"
    ex = MrcExample("q", context, "진법은?", [(ans, context.index(ans))])
    windows = encode_mrc(tok, [ex], seq_len=40, doc_stride=12)
    assert len(windows) > 2 and all(len(w.input_ids) <= 40 for w in windows)
    labelled = [w for w in windows if w.start != len(w.input_ids) - 1]
    assert labelled, "some window holds the whole answer"
    for w in labelled:
        assert context[w.spans[w.start][0] : w.spans[w.end][1]].strip() == ans
    # a window that holds only part of the answer (the answer crosses its boundary) points at "no answer"
    a0, a1 = context.index(ans), context.index(ans) + len(ans)

    def crossing(ws):
        out = []
        for w in ws:
            has_start = any(sp and sp[0] <= a0 < sp[1] for sp in w.spans)
            has_end = any(sp and sp[0] < a1 <= sp[1] for sp in w.spans)
            if has_start != has_end:
                out.append(w)
        return out

    cut = next(c for n in range(24, 64) if (c := crossing(encode_mrc(tok, [ex], n, 4))))
    assert all(w.start == w.end == len(w.input_ids) - 1 for w in cut)
    impossible = MrcExample("u", context, "태어난 해는?", [], True)
    assert all(w.start == w.end == len(w.input_ids) - 1 for w in encode_mrc(tok, [impossible], 40, 12))


def test_best_answer_across_windows_and_no_answer():
    context = "가나다라마바사"
    # window 1 covers 가나다라 and cuts the answer 라마바 at its boundary; window 2 covers 다라마바사
    w1 = MrcWindow(0, [1, 10, 11, 12, 13, 2], [None, (0, 1), (1, 2), (2, 3), (3, 4), None], 5, 5)
    w2 = MrcWindow(0, [1, 12, 13, 14, 15, 16, 2], [None, (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), None], 2, 4)
    s1, e1 = [0, 1, 0, 0, 3, 0], [0, 0, 0, 0, 3, 2.5]  # the cut-off "라" alone scores 6; "no answer" 2.5
    s2, e2 = [0, 0, 4, 0, 0, 0, 9], [0, 0, 0, 0, 4, 0, 0]  # "라마바" scores 8: the best span of all windows
    assert best_answer(context, [w1, w2], [s1, s2], [e1, e2], max_answer_tokens=5) == "라마바"
    # "no answer" wins when every window's null score beats the best span
    e2_null = [0, 0, 0, 0, 4, 0, 9]
    assert best_answer(context, [w1, w2], [s1, s2], [e1, e2_null], 5) == "라마바"  # min null over windows: 2.5 < 8
    assert best_answer(context, [w2], [s2], [e2_null], 5) == ""  # null 18 > 8
    assert best_answer(context, [w1, w2], [s1, s2], [e1, e2], max_answer_tokens=2) == "라"  # "라마바" is 3 tokens
