"""MinHash + LSH finds near-duplicates above the threshold and leaves unrelated texts alone."""

import unicodedata

import numpy as np

from kolm.data.dedup import NearDuplicateIndex, estimated_jaccard, minhash_signatures, text_hash
from kolm.data.normalize import make_normalizer

BASE = "이 영화는 배우들의 연기가 정말 훌륭하고 이야기 전개도 탄탄해서 끝까지 몰입해서 봤습니다 강력 추천합니다"
NEAR = BASE + "!!"  # true 5-gram Jaccard ~0.96
OTHER = "오늘 아침에는 비가 많이 와서 우산을 챙겨 출근했는데 버스가 늦게 와서 지각할 뻔했다 내일은 맑았으면"


def _jaccard(a, b, n=5):
    sa = {a[i : i + n] for i in range(len(a) - n + 1)}
    sb = {b[i : i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def test_signature_estimates_jaccard_and_is_deterministic():
    s1 = minhash_signatures([BASE, NEAR, OTHER], ngram=5, num_perm=256, seed=3)
    s2 = minhash_signatures([BASE, NEAR, OTHER], ngram=5, num_perm=256, seed=3)
    assert np.array_equal(s1, s2)
    assert abs(estimated_jaccard(s1[0], s1[1]) - _jaccard(BASE, NEAR)) < 0.08
    assert estimated_jaccard(s1[0], s1[2]) < 0.1


def test_signature_independent_of_batch():
    alone = minhash_signatures([NEAR], 5, 64)
    batch = minhash_signatures(["짧", "", BASE, NEAR], 5, 64)
    assert np.array_equal(alone[0], batch[3])


def test_lsh_clusters_near_duplicates_only(tmp_path):
    half = (
        BASE[: len(BASE) // 2] + " 그런데 후반부는 완전히 다른 이야기로 흘러가서 아쉬웠고 결말도 납득하기 어려웠습니다"
    )
    texts = [BASE, OTHER, NEAR, half, OTHER.replace("비가", "눈이")]
    assert _jaccard(BASE, half) < 0.5
    idx = NearDuplicateIndex(num_perm=128, bands=16, threshold=0.7, workdir=tmp_path)
    idx.add(minhash_signatures(texts[:2], 5, 128))
    idx.add(minhash_signatures(texts[2:], 5, 128))  # chunked input gives the same result
    labels, pairs = idx.clusters()
    assert labels.tolist()[0] == 0 and labels[2] == 0  # NEAR joins BASE's cluster, BASE is kept
    assert labels[3] == 3  # half-overlap text is not a duplicate at 0.7
    assert labels[1] == 1
    assert labels[4] in (1, 4)  # one-word edit of a short text: estimated Jaccard decides


def test_exact_hash_stable():
    # Fixed values: the hash must not change across runs, machines or library versions (blake2b, 8 bytes).
    assert text_hash("한국어").hex() == "9cc311b24111fdf9"
    assert text_hash("x").hex() == "4adf4367f96e584f"
    # Different texts (a trailing space, one syllable, a swapped order) get different hashes.
    texts = ["한국어", "한국어 ", "한국인", "어국한", "", BASE, NEAR]
    assert len({text_hash(t) for t in texts}) == len(texts)
    # The hash reads the exact code points: NFD and NFC forms of one text differ until normalized,
    # and texts that normalize to the same string then hash the same (what exact dedup relies on).
    nfc = "한국어 텍스트"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc and text_hash(nfd) != text_hash(nfc)
    normalize = make_normalizer("NFC")
    variants = [nfc, nfd, "  한국어\u00a0\u200b텍스트 ", "<p>한국어 텍스트</p>"]
    assert {normalize(v) for v in variants} == {nfc}
    assert {text_hash(normalize(v)) for v in variants} == {text_hash(nfc)}
