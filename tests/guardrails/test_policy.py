"""Guardrail policies: validation, and the organisation's floor that projects may only tighten."""

from __future__ import annotations

import pytest

from gateway.errors import ValidationFailed
from gateway.guardrail_policy import DEFAULT_FLOOR, Policy, Rules, effective, looser_than, validate

FIXED_POINT = {
    "input": {"pii": "redact", "secrets": "block", "prompt_injection": "flag", "denylist": "block"},
    "output": {"pii": "redact", "secrets": "block"},
    "denylist": ["term", "re:regex"],
    "restore_redactions": False,
    "denied_betas": ["files-api-2025-04-14", "web-search-*"],
}


def test_the_documented_policy_is_valid_and_round_trips():
    policy = validate(FIXED_POINT)

    extras = {"max_input_tokens": None, "classifier_model": None, "classifier_kind": "moderation"}
    assert policy.as_json() == FIXED_POINT | extras


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"input": {"pii": "explode"}}, "input"),
        ({"input": {"toxicity": "block"}}, "input"),
        ({"output": {"prompt_injection": "block"}}, "output"),
        ({"input": {"prompt_injection": "redact"}}, "input"),
        ({"input": ["pii"]}, "input"),
        ({"denylist": "term"}, "denylist"),
        ({"denylist": ["re:(a+)+$"]}, "denylist"),
        ({"denylist": [""]}, "denylist"),
        ({"restore_redactions": "yes"}, "restore_redactions"),
        ({"max_input_tokens": 0}, "max_input_tokens"),
        ({"colour": "red"}, "colour"),
        ({"denied_betas": "files-api-2025-04-14"}, "denied_betas"),
        ({"denied_betas": ["files api"]}, "denied_betas"),
        ({"denied_betas": ["*"]}, "denied_betas"),
        ({"denied_betas": [7]}, "denied_betas"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(data, field):
    with pytest.raises(ValidationFailed) as refused:
        validate(data)

    assert refused.value.field == field


def test_project_may_tighten_but_never_loosen_the_floor():
    floor = Policy(input={"secrets": "block", "pii": "flag"}, output={"secrets": "redact"}, max_input_tokens=8000)
    own = validate({"input": {"secrets": "off", "pii": "redact"}, "output": {"pii": "block"}, "max_input_tokens": 9000})

    policy = effective(floor, own)

    assert policy.input == {"secrets": "block", "pii": "redact"}
    assert policy.output == {"secrets": "redact", "pii": "block"}
    assert policy.max_input_tokens == 8000
    assert looser_than(floor, own) == ["input.secrets: off is raised to the organisation's block"]


def test_deny_lists_add_up():
    floor = Policy(denylist=("project falcon",))
    own = validate({"denylist": ["re:internal-\\d+", "project falcon"]})

    assert effective(floor, own).denylist == ("project falcon", "re:internal-\\d+")


def test_a_project_without_its_own_policy_gets_the_floor():
    assert effective(DEFAULT_FLOOR, None) == DEFAULT_FLOOR


def test_the_classifier_check_needs_a_model_and_cannot_redact():
    with pytest.raises(ValidationFailed) as refused:
        validate({"input": {"classifier": "block"}})
    assert refused.value.field == "classifier_model"
    with pytest.raises(ValidationFailed):
        validate({"input": {"classifier": "redact"}, "classifier_model": "moderator"})
    with pytest.raises(ValidationFailed):
        validate({"classifier_model": "moderator", "classifier_kind": "vibes"})


def test_a_projects_classifier_model_wins_and_the_floor_supplies_one_otherwise():
    floor = validate({"input": {"classifier": "flag"}, "classifier_model": "omni", "classifier_kind": "moderation"})

    assert effective(floor, validate({})).classifier_model == "omni"
    own = validate({"classifier_model": "guard", "classifier_kind": "chat"})
    assert (effective(floor, own).classifier_model, effective(floor, own).classifier_kind) == ("guard", "chat")


def test_denied_betas_add_up_and_a_star_denies_a_prefix():
    floor = validate({"denied_betas": ["files-api-2025-04-14"]})
    project = validate({"denied_betas": ["web-search-*", "files-api-2025-04-14"]})

    rules = Rules.of(effective(floor, project), name="Shop")

    assert rules.denied_betas == ("files-api-2025-04-14", "web-search-*")
    assert rules.denied_beta(["claude-code-20250219", "web-search-2025-03-05"]) == "web-search-2025-03-05"
    assert rules.denied_beta(["files-api-2025-04-14"]) == "files-api-2025-04-14"
    assert rules.denied_beta(["files-api-2026-01-01", "web-searcher"]) is None
    assert Rules.of(effective(floor, None), name="Shop").denied_beta(["web-search-2025-03-05"]) is None
