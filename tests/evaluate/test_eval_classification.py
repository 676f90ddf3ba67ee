"""Classification metrics against hand-computed values and scikit-learn."""

import pytest

from kolm.errors import DataError
from kolm.evaluate.classification import accuracy, classification_report, confusion_matrix, macro_f1


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
    sk = pytest.importorskip("sklearn.metrics")
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
