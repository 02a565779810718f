"""What the request log keeps of bodies, per policy: full, redacted, metadata; capped with a marker."""

from __future__ import annotations

import pytest

from gateway import log_bodies

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Mail jan.jansen@example.nl about invoice 42"}]}
RESPONSE = {"choices": [{"message": {"role": "assistant", "content": "Done, jan.jansen@example.nl is informed."}}]}


def test_full_keeps_both_bodies_as_json():
    row = log_bodies.render("full", REQUEST, RESPONSE)

    assert row["bodies"] == "full" and not row["bodies_truncated"]
    assert "jan.jansen@example.nl" in row["request_body"] and "invoice 42" in row["request_body"]
    assert "is informed" in row["response_body"]


def test_redacted_replaces_pii_with_placeholders_in_both_bodies():
    row = log_bodies.render("redacted", REQUEST, RESPONSE)

    assert "jan.jansen@example.nl" not in row["request_body"] + row["response_body"]
    assert "<EMAIL_1>" in row["request_body"] and "<EMAIL_1>" in row["response_body"]
    assert "invoice 42" in row["request_body"]


def test_redacted_removes_secrets_too():
    row = log_bodies.render("redacted", {"messages": [{"content": "key: sk-proj-" + "a1B2c3D4e5" * 5}]}, None)

    assert "a1B2c3D4e5" not in row["request_body"]


def test_metadata_keeps_no_body():
    row = log_bodies.render("metadata", REQUEST, RESPONSE)

    assert row == {"bodies": "metadata", "request_body": "", "response_body": "", "bodies_truncated": False}


def test_long_body_is_cut_with_a_marker_saying_how_much(settings):
    settings.LOG_BODY_MAX_BYTES = 256
    body = {"messages": [{"content": "é" * 1000}]}
    whole = ('{"messages":[{"content":"' + "é" * 1000 + '"}]}').encode()

    row = log_bodies.render("full", body, None)

    assert row["bodies_truncated"]
    kept, marker = row["request_body"].split("…[truncated: ")
    assert 250 <= len(kept.encode()) <= 256  # cut at a character boundary
    assert int(marker.removesuffix(" more bytes]")) == len(whole) - len(kept.encode())


@pytest.mark.parametrize(
    ("default", "project", "effective"),
    [
        ("full", "", "full"),
        ("full", "redacted", "redacted"),
        ("redacted", "full", "redacted"),  # a project may only be stricter
        ("redacted", "metadata", "metadata"),
        ("metadata", "full", "metadata"),
    ],
)
def test_effective_policy_is_the_stricter_of_default_and_project(settings, default, project, effective):
    settings.LOG_BODIES = default

    assert log_bodies.effective(project) == effective
