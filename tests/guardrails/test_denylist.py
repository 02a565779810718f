import pytest

from gateway.guardrails import DenyListError, compile_denylist, detect_denylist


def hits(text: str, entries: list[str]) -> list[str]:
    return [text[f.start : f.end] for f in detect_denylist(text, compile_denylist(entries))]


def test_term_matches_case_insensitively_when_at_word_boundaries() -> None:
    text = "About PROJECT FALCON and project falcon; falconry is fine."
    assert hits(text, ["Project Falcon"]) == ["PROJECT FALCON", "project falcon"]


def test_term_does_not_match_when_inside_a_longer_word() -> None:
    assert hits("falconry and Falconer", ["falcon"]) == []


def test_term_matches_when_disguised_with_homoglyphs_zero_width_or_fullwidth() -> None:
    text = "Pr\u043eject\u200b Falcon / \uff30roject falcon"
    assert hits(text, ["project falcon"]) == ["Pr\u043eject\u200b Falcon", "\uff30roject falcon"]


def test_term_matches_across_any_whitespace_when_the_term_has_a_space() -> None:
    assert hits("project\n   falcon", ["project falcon"]) == ["project\n   falcon"]


def test_term_with_symbols_matches_when_its_edges_are_not_word_characters() -> None:
    assert hits("we use c++ and c#", ["c++", "c#"]) == ["c++", "c#"]


def test_longest_term_wins_when_terms_share_a_prefix() -> None:
    assert hits("the falcon nine launch", ["falcon", "falcon nine"]) == ["falcon nine"]


def test_regex_entry_matches_when_prefixed_with_re() -> None:
    text = "see PRJ-4821 and prj-0001, not PRJ-12"
    assert hits(text, [r"re:\bPRJ-\d{4}\b"]) == ["PRJ-4821", "prj-0001"]


def test_finding_detail_names_the_rule_when_reported() -> None:
    (term,) = detect_denylist("Project Falcon", compile_denylist(["project falcon"]))
    (pattern,) = detect_denylist("PRJ-4821", compile_denylist([r"re:PRJ-\d{4}"]))
    assert (term.kind, term.category, term.detail) == ("denylist", "denylist", "project falcon")
    assert pattern.detail == r"re:PRJ-\d{4}"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("re:[unclosed", "does not compile"),
        ("re:(a+)+$", "nested unbounded quantifiers"),
        (r"re:(\w+\s?)+$", "nested unbounded quantifiers"),
        ("re:(a|aa)+b", "alternation inside an unbounded quantifier"),
        ("re:.*a.*b", "more than one unbounded quantifier"),
        ("re:x*", "matches the empty string"),
        (r"re:(a)\1", "backreferences"),
        ("re:" + "a" * 600, "longer than"),
    ],
)
def test_compile_rejects_pattern_when_it_could_run_away_or_is_invalid(entry: str, reason: str) -> None:
    with pytest.raises(DenyListError) as excinfo:
        compile_denylist(["fine term", entry])
    assert reason in str(excinfo.value)
    assert [bad for bad, _ in excinfo.value.problems] == [entry]


def test_compile_accepts_pattern_when_inner_repeat_is_possessive() -> None:
    assert hits("1.2.3.x", [r"re:(?:\d++\.)+x"]) == ["1.2.3.x"]


def test_regex_is_skipped_when_a_literal_every_match_needs_is_absent() -> None:
    denylist = compile_denylist(["re:foo.*bar"])
    (_, _, literals) = denylist.patterns[0]
    assert literals == ("foo", "bar")
    # "foo " * 16000 with no "bar" is the pattern's worst case; the literal check skips it
    assert detect_denylist("foo " * 16_000, denylist) == []
    assert hits("foo and then bar", ["re:foo.*bar"]) == ["foo and then bar"]


def test_regex_scan_stops_when_the_scan_cap_is_reached() -> None:
    denylist = compile_denylist([r"re:\bsecret\b"], max_scan_chars=100)
    assert detect_denylist("x " * 200 + "secret", denylist) == []
    assert detect_denylist("secret " + "x " * 200, denylist)


def test_regex_match_is_found_when_it_crosses_a_window_edge() -> None:
    text = "x" * 1_020 + " PRJ-4821 tail"
    assert hits(text, [r"re:PRJ-\d{4}"]) == ["PRJ-4821"]


def test_empty_deny_list_is_falsy_when_no_entries() -> None:
    assert not compile_denylist(["", "  "])
