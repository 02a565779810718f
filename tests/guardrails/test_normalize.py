from gateway.guardrails.normalize import digit_runs, normalize


def test_text_is_returned_as_is_when_ascii_without_escapes() -> None:
    doc = normalize("plain ascii, nothing to do")
    assert doc.is_identity
    assert doc.text == doc.original
    assert doc.span(6, 11) == (6, 11)


def test_zero_width_and_bidi_characters_are_removed_when_present() -> None:
    doc = normalize("jan\u200b.\u200djansen\u2060@exa\ufeffmple.nl\u202e")
    assert doc.text == "jan.jansen@example.nl"


def test_span_covers_the_invisible_characters_when_they_sit_inside_a_match() -> None:
    original = "mail jan\u200b@example.nl now"
    doc = normalize(original)
    start = doc.text.index("jan")
    end = doc.text.index(" now")
    assert doc.span(start, end) == (5, original.index(" now"))
    assert original[slice(*doc.span(start, end))] == "jan\u200b@example.nl"


def test_look_alike_letters_fold_to_ascii_when_cyrillic_or_greek() -> None:
    assert normalize("\u0440\u0430\u0443\u0440\u0430l \u0391pple \u0397ello").text == "paypal Apple Hello"


def test_fullwidth_forms_fold_when_nfkc_applies() -> None:
    assert normalize("\uff34\uff45\uff53\uff54\uff20\uff11\uff12\u3000x").text == "Test@12 x"


def test_json_escapes_decode_when_text_has_backslash_sequences() -> None:
    original = 'jan\\u0040example.nl\\n\\"quoted\\"'
    doc = normalize(original)
    assert doc.text == 'jan@example.nl\n"quoted"'
    at = doc.text.index("@")
    assert original[slice(*doc.span(at, at + 1))] == "\\u0040"


def test_escaped_invisible_character_is_dropped_when_decoded() -> None:
    assert normalize("sk-pr\\u200boj").text == "sk-proj"


def test_overlay_marks_are_removed_when_text_is_struck_through() -> None:
    assert normalize("e\u0336v\u0336i\u0336l").text == "evil"


def test_accented_letters_compose_when_written_decomposed() -> None:
    doc = normalize("cafe\u0301 open")
    assert doc.text == "café open"
    assert doc.span(3, 4) == (3, 5)


def test_digits_of_other_scripts_read_as_ascii_when_present() -> None:
    assert normalize("\u0664\u0661\u0661\u0661 \u096a\u0967").text == "4111 41"


def test_expanded_character_maps_to_the_whole_original_when_nfkc_expands() -> None:
    doc = normalize("\ufb01le")  # the "fi" ligature
    assert doc.text == "file"
    assert doc.span(0, 1) == (0, 1)
    assert doc.span(1, 3) == (0, 2)


def test_digit_runs_join_separators_when_spaced_dotted_or_dashed() -> None:
    runs = digit_runs("card 4111 1111-1111.1111, bsn 1 2 3 4 5 6 7 8 2.", min_digits=9)
    assert [r.digits for r in runs] == ["4111111111111111", "123456782"]
    assert [r.raw for r in runs] == ["4111 1111-1111.1111", "1 2 3 4 5 6 7 8 2"]


def test_digit_runs_never_start_inside_a_run_when_the_run_is_short() -> None:
    assert digit_runs("12345678 and 1234 5678", min_digits=9) == []


def test_digit_run_groups_report_offsets_and_separators_when_asked() -> None:
    (run,) = digit_runs("x 1234.56.782 y", min_digits=9)
    assert run.groups() == [(2, 6, ""), (7, 9, "."), (10, 13, ".")]
