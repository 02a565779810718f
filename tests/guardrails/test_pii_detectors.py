import pytest

from gateway.guardrails.pii import (
    bsn_valid,
    detect_bsn,
    detect_credit_card,
    detect_email,
    detect_iban,
    detect_ipv4,
    detect_ipv6,
    detect_phone,
    iban_valid,
    luhn_valid,
)


def spans(text: str, findings) -> list[str]:  # type: ignore[no-untyped-def]
    return [text[f.start : f.end] for f in findings]


# --- e-mail


@pytest.mark.parametrize(
    "address",
    ["jan.jansen@example.nl", "pieter+invoices@example.com", "INFO@EXAMPLE.BE", "a_b-c@mail.sub.example.co.uk"],
)
def test_email_is_found_when_written_plainly(address: str) -> None:
    text = f"Contact {address}, please."
    assert spans(text, detect_email(text)) == [address]
    assert detect_email(text)[0].category == "pii"


def test_email_is_found_in_the_original_text_when_split_by_zero_width_characters() -> None:
    text = "mail ja\u200bn@exam\u200dple.nl now"
    assert spans(text, detect_email(text)) == ["ja\u200bn@exam\u200dple.nl"]


def test_email_is_found_when_at_and_dot_are_written_out() -> None:
    text = "mail jan [at] example [dot] com of piet(at)voorbeeld(punt)nl"
    assert spans(text, detect_email(text)) == ["jan [at] example [dot] com", "piet(at)voorbeeld(punt)nl"]


@pytest.mark.parametrize(
    "text",
    [
        "@property and @dataclass(frozen=True)",
        "npm i @types/node@20.14.2",
        "user@localhost",
        "WHERE email LIKE '%@x.com'",
    ],
)
def test_email_is_not_found_when_text_only_has_an_at_sign(text: str) -> None:
    assert detect_email(text) == []


# --- phone numbers


@pytest.mark.parametrize(
    "number",
    [
        "06-12345678",
        "06 1234 5678",
        "0612345678",
        "020 123 4567",
        "(020) 123 4567",
        "+31 6 12345678",
        "+31 (0)6 1234 5678",
        "0031 6 12345678",
        "+32 470 12 34 56",
        "0470 12 34 56",
        "02 511 22 33",
        "+44 20 7946 0958",
        "+1 (555) 010-4477",
        "06 - 12 34 56 78",
    ],
)
def test_phone_number_is_found_when_in_a_dutch_belgian_or_international_format(number: str) -> None:
    text = f"Bel me op {number} na zessen."
    assert spans(text, detect_phone(text)) == [number]


@pytest.mark.parametrize(
    "text",
    [
        "order 0612345678901 shipped",
        "version 06.12.34",
        "on 01-02-2024 at 10:30",
        "ratio 0.123456789",
        "ISBN 0-306-40615-2",
        "booking ref 0612 3456 7",
        "hash 0123456789abcdef",
        "IBAN NL12 ABCD 0123 4567 89",
        "021234567 is nine digits without separators",
    ],
)
def test_phone_number_is_not_found_when_digits_belong_to_something_else(text: str) -> None:
    assert detect_phone(text) == []


# --- IBAN


def test_iban_validates_when_check_digits_are_right() -> None:
    assert iban_valid("NL91ABNA0417164300")
    assert not iban_valid("NL92ABNA0417164300")
    assert not iban_valid("NL91ABNA041716430")  # one digit short
    assert not iban_valid("XX91ABNA0417164300")  # no such country


@pytest.mark.parametrize(
    "iban",
    [
        "NL91 ABNA 0417 1643 00",
        "NL91ABNA0417164300",
        "nl91abna0417164300",
        "BE68 5390 0754 7034",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL 91 ABNA 0417 1643 00",
    ],
)
def test_iban_is_found_when_valid_in_any_grouping(iban: str) -> None:
    text = f"Rekening {iban} t.n.v. J. de Vries."
    assert spans(text, detect_iban(text)) == [iban]


def test_iban_is_not_found_when_the_checksum_fails() -> None:
    assert detect_iban("Rekening NL92 ABNA 0417 1643 00.") == []


def test_iban_is_not_found_when_glued_to_more_characters() -> None:
    assert detect_iban("ref NL91ABNA0417164300X9") == []


def test_iban_is_found_when_fullwidth() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "NL91ABNA0417164300")
    text = f"IBAN {fullwidth}!"
    assert spans(text, detect_iban(text)) == [fullwidth]


# --- payment cards


def test_luhn_accepts_when_check_digit_is_right() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",
        "3782 822463 10005",
        "4012888888881881",
        "6011 1111 1111 1117",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ],
)
def test_card_is_found_when_luhn_and_issuer_prefix_match(card: str) -> None:
    text = f"Card: {card} exp 12/28"
    assert spans(text, detect_credit_card(text)) == [card]


def test_card_is_found_when_the_cvc_follows_after_a_space() -> None:
    text = "card 4111 1111 1111 1111 123"
    assert spans(text, detect_credit_card(text)) == ["4111 1111 1111 1111"]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "timestamp 1718100000000",  # no issuer starts with 1
        "id 4111111111111111999",  # 19 digits, Luhn fails as a whole
        "ABC4111111111111111",  # glued to letters
    ],
)
def test_card_is_not_found_when_number_is_not_a_card(text: str) -> None:
    assert detect_credit_card(text) == []


# --- BSN


def test_bsn_passes_when_the_eleven_test_holds() -> None:
    assert bsn_valid("111222333")
    assert bsn_valid("123456782")
    assert not bsn_valid("123456789")
    assert not bsn_valid("000000000")


@pytest.mark.parametrize("bsn", ["123456782", "1234.56.782", "123 456 782", "123-45-6782", "1 2 3 4 5 6 7 8 2"])
def test_bsn_is_found_when_written_in_common_groupings(bsn: str) -> None:
    text = f"Mijn BSN is {bsn}."
    findings = detect_bsn(text)
    assert spans(text, findings) == [bsn]
    assert findings[0].score == 1.0


def test_bsn_scores_lower_when_no_context_names_it() -> None:
    (finding,) = detect_bsn("nummer 123456782")
    assert finding.score == 0.7


@pytest.mark.parametrize(
    "text",
    [
        "ref 71234567823 settled",  # inside a longer run
        "Artikelnummer 123456782 is uitverkocht",
        "Order #123456782 shipped",
        "AB123456782",
        "amount 123.456.782 euro",
        "host 10.100.10.100",
    ],
)
def test_bsn_is_not_found_when_number_is_part_of_something_else(text: str) -> None:
    assert detect_bsn(text) == []


# --- IP addresses


@pytest.mark.parametrize("ip", ["192.168.1.20", "10.8.0.1", "203.0.113.45", "172.16.254.1"])
def test_ipv4_is_found_when_octets_are_valid(ip: str) -> None:
    text = f"connect to {ip}:5432 now"
    assert spans(text, detect_ipv4(text)) == [ip]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.0",
        "version 1.2.3.4",
        "v1.2.3.4",
        "OID 1.3.6.1.4.1",
        "Chrome 126.0.6478.114",
        "01.02.03.04",
    ],
)
def test_ipv4_is_not_found_when_not_a_routable_address(text: str) -> None:
    assert detect_ipv4(text) == []


@pytest.mark.parametrize(
    "ip",
    ["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2001:DB8:0:0:8:800:200C:417A", "::ffff:192.0.2.128"],
)
def test_ipv6_is_found_when_the_address_parses(ip: str) -> None:
    text = f"from {ip} today"
    assert spans(text, detect_ipv6(text)) == [ip]


@pytest.mark.parametrize(
    "text",
    ["std::vector<int>", "x = a[1::2]", "at 12:30:45", "mac 00:1a:2b:3c:4d:5e", "::1 is localhost", "abc::def"],
)
def test_ipv6_is_not_found_when_colons_mean_something_else(text: str) -> None:
    assert detect_ipv6(text) == []


def test_context_words_match_whole_words_when_checking_what_precedes_a_number() -> None:
    assert len(detect_phone("Preferred number: 06-12345678")) == 1  # "ref" inside "preferred"
    assert len(detect_ipv4("vault 10.1.2.3 is sealed")) == 1  # "v" only as a word means version
    assert detect_bsn("ordernummer 123456782") == []  # "order" as the start of a word
