"""gateway/env.py: typed reads of the environment that fail loudly, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway.env import env_bool, env_float, env_int, env_list, env_secret, env_str

NAME = "SYMBIOSIS_TEST_VAR"


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.delenv(f"{NAME}_FILE", raising=False)


def test_default_is_returned_when_the_variable_is_unset() -> None:
    assert env_str(NAME, "fallback") == "fallback"
    assert env_bool(NAME, True) is True
    assert env_int(NAME, 7) == 7
    assert env_float(NAME, 2.5) == 2.5
    assert env_list(NAME, ["a"]) == ["a"]


def test_string_is_returned_as_given_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "  spaced  ")
    assert env_str(NAME, "fallback") == "  spaced  "


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "On", " true "])
def test_bool_is_true_when_set_to_a_true_word(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NAME, value)
    assert env_bool(NAME, False) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off", ""])
def test_bool_is_false_when_set_to_a_false_word_or_empty(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NAME, value)
    assert env_bool(NAME, True) is False


@pytest.mark.parametrize("value", ["maybe", "2", "y"])
def test_bool_raises_naming_the_variable_when_malformed(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NAME, value)
    with pytest.raises(ImproperlyConfigured, match=NAME):
        env_bool(NAME, True)


def test_int_is_parsed_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, " 42 ")
    assert env_int(NAME, 0) == 42


def test_int_is_the_default_when_set_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "")
    assert env_int(NAME, 5) == 5


@pytest.mark.parametrize("value", ["ten", "1.5", "3x"])
def test_int_raises_naming_the_variable_when_malformed(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NAME, value)
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be a whole number"):
        env_int(NAME, 0)


def test_int_raises_when_below_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "0")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be at least 1"):
        env_int(NAME, 5, minimum=1)


def test_int_is_accepted_when_equal_to_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "1")
    assert env_int(NAME, 5, minimum=1) == 1


def test_float_raises_naming_the_variable_when_malformed_or_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "soon")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be a number"):
        env_float(NAME, 1.0)
    monkeypatch.setenv(NAME, "-0.5")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be at least 0.0"):
        env_float(NAME, 1.0)


def test_list_splits_on_commas_and_drops_blanks_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, " a.example , ,b.example,")
    assert env_list(NAME, []) == ["a.example", "b.example"]


def test_value_is_read_from_the_file_when_name_file_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "value"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv(f"{NAME}_FILE", str(secret_file))
    monkeypatch.setenv(NAME, "from-the-variable")

    assert env_str(NAME, "") == "from-a-file"
    assert env_secret(NAME) == "from-a-file"


def test_file_contents_are_parsed_when_name_file_holds_a_number(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "n").write_text("12\n")
    monkeypatch.setenv(f"{NAME}_FILE", str(tmp_path / "n"))
    assert env_int(NAME, 0, minimum=1) == 12


def test_missing_file_raises_naming_the_variable_when_name_file_points_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"{NAME}_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match=f"{NAME}_FILE"):
        env_secret(NAME)


def test_secret_is_none_when_unset_or_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_secret(NAME) is None
    monkeypatch.setenv(NAME, "   ")
    assert env_secret(NAME) is None


def test_secret_is_stripped_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, " s3cret \n")
    assert env_secret(NAME) == "s3cret"


def test_secret_takes_no_default_when_called() -> None:
    with pytest.raises(TypeError):
        env_secret(NAME, "a-default")  # type: ignore[call-arg]
