"""Classification metrics against hand-computed values and scikit-learn."""

import pytest

from kolm.errors import DataError
from kolm.metrics.classification import (
    accuracy,
    classification_report,
    confusion_markdown,
    confusion_matrix,
    macro_f1,
    per_class,
)


def test_hand_computed_binary():
    gold = ["긍정", "긍정", "부정", "부정", "긍정"]
    pred = ["긍정", "부정", "부정", "긍정", "긍정"]
    labels = ["부정", "긍정"]
    assert accuracy(gold, pred) == pytest.approx(3 / 5)
    assert confusion_matrix(gold, pred, labels) == [[1, 1], [1, 2]]
    # 부정: P=1/2 R=1/2 F1=1/2 ; 긍정: P=2/3 R=2/3 F1=2/3
    assert macro_f1(gold, pred, labels) == pytest.approx((0.5 + 2 / 3) / 2)


def test_indices_and_names_agree():
    labels = ["neg", "pos"]
    a = classification_report([0, 1, 1, 0], [0, 1, 0, 0], labels)
    b = classification_report(["neg", "pos", "pos", "neg"], ["neg", "pos", "neg", "neg"], labels)
    assert a == b
    assert a["labels"] == labels and a["n"] == 4


def test_matches_sklearn_multiclass():
    import sklearn.metrics as sk

    gold = [0, 1, 2, 2, 1, 0, 3, 2, 1, 1, 0, 2]
    pred = [0, 2, 2, 1, 1, 0, 0, 2, 1, 0, 0, 2]
    labels = [0, 1, 2, 3]
    rep = classification_report(gold, pred, labels)
    assert rep["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred))
    assert rep["macro_f1"] == pytest.approx(sk.f1_score(gold, pred, labels=labels, average="macro", zero_division=0))
    assert rep["confusion_matrix"] == sk.confusion_matrix(gold, pred, labels=labels).tolist()
    prec = sk.precision_score(gold, pred, labels=labels, average=None, zero_division=0)
    assert [rep["per_class"][str(lab)]["precision"] for lab in labels] == pytest.approx(list(prec))


def test_label_outside_declared_set():
    with pytest.raises(DataError, match="not in the declared label set"):
        classification_report(["pos", "neutral"], ["pos", "pos"], ["neg", "pos"])
    with pytest.raises(DataError, match="differ in length"):
        classification_report([0, 1], [0], ["a", "b"])


def test_hand_computed_three_classes_with_an_unseen_label():
    labels = ["a", "b", "c", "d"]  # "d" is declared but never gold nor predicted
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    rep = classification_report(gold, pred, labels)
    # a: P=2/2 R=2/3 F1=0.8 ; b: P=1/2 R=1/2 F1=0.5 ; c: P=1/2 R=1/1 F1=2/3 ; d: 0 (zero_division=0)
    assert rep["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert rep["per_class"]["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rep["per_class"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert rep["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rep["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3 + 0.0) / 4)
    assert rep["accuracy"] == pytest.approx(4 / 6) and rep["n"] == 6
    assert rep["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert per_class(gold, pred, labels) == rep["per_class"]
    json_types = {type(v) for s in rep["per_class"].values() for v in s.values()} | {
        type(rep["accuracy"]),
        type(rep["macro_f1"]),
    }
    assert json_types <= {float, int}  # plain Python numbers: the report goes into eval.json


def test_empty_input_and_markdown():
    rep = classification_report([], [], ["부정", "긍정"])
    assert rep["accuracy"] == 0.0 and rep["macro_f1"] == 0.0 and rep["confusion_matrix"] == [[0, 0], [0, 0]]
    rep = classification_report(["긍정", "부정"], ["긍정", "긍정"], ["부정", "긍정"])
    assert confusion_markdown(rep).splitlines() == [
        "| gold \\ predicted | 부정 | 긍정 |",
        "|---|---|---|",
        "| 부정 | 0 | 1 |",
        "| 긍정 | 0 | 1 |",
    ]
