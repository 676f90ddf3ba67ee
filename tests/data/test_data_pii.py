"""PII redaction: checksummed 주민등록번호 and card numbers, Korean phone formats, e-mail, IP."""

from collections import Counter

from kolm.data.pii import luhn_valid, redact, rrn_valid


def _rrn_with_check(first12: str) -> str:
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    check = (11 - sum(int(d) * w for d, w in zip(first12, weights)) % 11) % 10
    return first12 + str(check)


def test_rrn_checksum():
    valid = _rrn_with_check("900101123456")
    assert rrn_valid(valid)
    invalid = valid[:12] + str((int(valid[12]) + 1) % 10)
    assert not rrn_valid(invalid)


def test_rrn_redacted_only_when_valid():
    valid = _rrn_with_check("850315234567")
    invalid = valid[:12] + str((int(valid[12]) + 3) % 10)
    counts = Counter()
    out = redact(f"주민번호 {valid[:6]}-{valid[6:]} 와 {invalid[:6]}-{invalid[6:]}", counts=counts)
    assert out.startswith("주민번호 <rrn> 와 ")
    assert f"{invalid[:6]}-{invalid[6:]}" in out
    assert counts["rrn"] == 1


def test_random_13_digit_number_survives():
    valid = _rrn_with_check("880101123456")
    bad = valid[:12] + str((int(valid[12]) + 1) % 10)  # date-shaped, wrong check digit
    text = f"주문번호 {bad} 확인, 송장 {bad[:6]}-{bad[6:]}"
    assert not rrn_valid(bad)
    assert redact(text) == text


def test_phone_formats():
    for phone in (
        "010-1234-5678",
        "01012345678",
        "010 1234 5678",
        "02-123-4567",
        "031-987-6543",
        "+82 10-1234-5678",
        "070-1234-5678",
        "1588-1234",
        "(02)1234-5678",
    ):
        counts = Counter()
        assert redact(f"연락처 {phone} 입니다", kinds=["phone"], counts=counts) == "연락처 <phone> 입니다", phone
        assert counts["phone"] == 1
    assert redact("2024-11-28 기준 100,000원", kinds=["phone"]) == "2024-11-28 기준 100,000원"


def test_card_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert redact("카드 4111-1111-1111-1111 결제", kinds=["card"]) == "카드 <card> 결제"
    assert redact("카드 4111-1111-1111-1112 결제", kinds=["card"]) == "카드 4111-1111-1111-1112 결제"


def test_email_and_ip():
    counts = Counter()
    out = redact("문의 hong.gildong@example.co.kr, 서버 192.168.0.1, 버전 1.2.3.400", counts=counts)
    assert out == "문의 <email>, 서버 <ip>, 버전 1.2.3.400"
    assert counts["email"] == 1 and counts["ip"] == 1
