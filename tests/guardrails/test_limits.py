from gateway.guardrails import approx_tokens, check_size


def test_tokens_are_about_four_characters_when_text_is_ascii() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("abcd") == 1
    assert approx_tokens("abcde") == 2
    assert approx_tokens("x" * 8_000) == 2_000


def test_each_non_ascii_character_counts_as_a_token_when_text_is_cjk() -> None:
    assert approx_tokens("你好世界") == 4
    assert approx_tokens("abcd你好") == 3


def test_size_check_passes_when_under_both_caps() -> None:
    result = check_size("hello world", max_chars=100, max_tokens=10)
    assert result.ok
    assert (result.chars, result.approx_tokens, result.reason) == (11, 3, "")


def test_size_check_fails_with_reason_when_characters_exceed_the_cap() -> None:
    result = check_size("x" * 101, max_chars=100)
    assert not result.ok
    assert result.reason == "101 characters, over the cap of 100"


def test_size_check_fails_with_reason_when_tokens_exceed_the_cap() -> None:
    result = check_size("x" * 400, max_tokens=99)
    assert not result.ok
    assert result.reason == "about 100 tokens, over the cap of 99"


def test_size_check_passes_when_no_caps_are_set() -> None:
    assert check_size("x" * 1_000_000).ok
