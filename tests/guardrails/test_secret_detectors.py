import base64
import secrets

import pytest

from gateway.guardrails.credentials import (
    detect_anthropic_key,
    detect_aws_access_key_id,
    detect_aws_secret_access_key,
    detect_azure_openai_key,
    detect_base64_secrets,
    detect_github_token,
    detect_gitlab_token,
    detect_jwt,
    detect_openai_key,
    detect_private_key,
    detect_secrets,
    detect_symbiosis_admin_token,
    detect_symbiosis_key,
)
from gateway.secrets_format import ADMIN_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX, generate_secret

OPENAI_PROJECT = "sk-proj-TESTONLYabc123DEF456ghi789JKL012mno345PQR678stu"
OPENAI_LEGACY = "sk-FAKEabcdefghij1234T3BlbkFJklmnopqrst567890"
ANTHROPIC = "sk-ant-api03-TESTONLY_aBcDeF123456-ghIJkl789012mnOPqr345678stUVwx901234yzAB567890cdEFgh-AA"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0ZXN0IiwibmFtZSI6IkZha2UgVXNlciJ9.dGVzdC1zaWduYXR1cmUtbm90LXJlYWw"
)


def spans(text: str, findings) -> list[str]:  # type: ignore[no-untyped-def]
    return [text[f.start : f.end] for f in findings]


@pytest.mark.parametrize("key", [OPENAI_PROJECT, OPENAI_LEGACY, "sk-svcacct-TEST" + "aB3" * 14])
def test_openai_key_is_found_when_pasted(key: str) -> None:
    text = f"OPENAI_API_KEY={key}\n"
    findings = detect_openai_key(text)
    assert spans(text, findings) == [key]
    assert findings[0].category == "secrets"


@pytest.mark.parametrize(
    "text",
    [
        "risk-assessment-framework-for-teams-2024",
        "use sk-learn-style-pipelines-for-everything",
        "ask-the-team-about-it-before-friday-123",
        f"{ANTHROPIC} is not an OpenAI key",
        "sk-test-... in the sandbox",
    ],
)
def test_openai_key_is_not_found_when_sk_is_part_of_a_word_or_another_key(text: str) -> None:
    assert detect_openai_key(text) == []


def test_anthropic_key_is_found_when_pasted() -> None:
    text = f'ANTHROPIC_API_KEY="{ANTHROPIC}"'
    assert spans(text, detect_anthropic_key(text)) == [ANTHROPIC]


def test_our_virtual_key_and_admin_token_are_found_when_generated_by_the_gateway() -> None:
    key, token = generate_secret(VIRTUAL_KEY_PREFIX), generate_secret(ADMIN_TOKEN_PREFIX)
    text = f"Authorization: Bearer {key}\nX-Admin: {token}"
    assert spans(text, detect_symbiosis_key(text)) == [key]
    assert spans(text, detect_symbiosis_admin_token(text)) == [token]
    assert detect_symbiosis_key(text)[0].score == 1.0
    assert detect_openai_key(text) == []  # sk-sym- is ours, not OpenAI's


def test_azure_key_is_found_when_key_context_precedes_it() -> None:
    for text in (
        "AZURE_OPENAI_API_KEY=8f3a9c2e7b1d4f6a0c5e9b2d7f4a1c3e",
        "curl -H 'api-key: 0d4e8f1a2b3c5d6e7f8091a2b3c4d5e6' https://x.openai.azure.com",
        "my key is 0d4e8f1a2b3c5d6e7f8091a2b3c4d5e6, it stopped working",
    ):
        assert len(detect_azure_openai_key(text)) == 1, text


def test_azure_key_is_found_when_the_token_stands_alone_on_its_line() -> None:
    text = "Here it is:\n  '3c6e0b8a9c15224a8228b9a98ca1531d'\nthanks"
    (finding,) = detect_azure_openai_key(text)
    assert text[finding.start : finding.end] == "3c6e0b8a9c15224a8228b9a98ca1531d"
    assert finding.score == 0.6


@pytest.mark.parametrize(
    "text",
    [
        "md5: 9e107d9d372bb6826bd81d3542a419d6",
        "request id 4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99 failed",
        "cache key: 5d41402abc4b2a76b9719d911017c592",
        "Idempotency-Key: 9b2f4c1d7e3a4b5c8d9e0f1a2b3c4d5e",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",  # 40 hex, a git SHA
        "uuid 7f9c2ba4-e88f-11ee-a2b1-0242ac120002",
        "the value 5d41402abc4b2a76b9719d911017c592 appears in the table",  # no context, not alone
    ],
)
def test_azure_key_is_not_found_when_hex_is_a_hash_or_identifier(text: str) -> None:
    assert detect_azure_openai_key(text) == []


def test_aws_access_key_id_is_found_when_prefix_and_length_match() -> None:
    text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE and ASIAFAKE1234567890AB"
    assert spans(text, detect_aws_access_key_id(text)) == ["AKIAIOSFODNN7EXAMPLE", "ASIAFAKE1234567890AB"]


def test_aws_access_key_id_is_not_found_when_too_short_or_glued() -> None:
    assert detect_aws_access_key_id("AKIA1234 and XAKIAIOSFODNN7EXAMPLE and AKIAIOSFODNN7EXAMPLEX") == []


def test_aws_secret_is_found_when_named_in_context() -> None:
    text = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert spans(text, detect_aws_secret_access_key(text)) == ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]


def test_aws_secret_is_not_found_when_no_context_names_it() -> None:
    assert detect_aws_secret_access_key("value wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == []


@pytest.mark.parametrize(
    "token",
    [
        "ghp_TESTONLY1234567890abcdefghijABCDEFGHij",
        "gho_TEST1234567890abcdefghijklmnopqrstuv",
        "ghs_FAKE0123456789abcdefABCDEF0123456789",
        "github_pat_11TESTABCDEFGHIJKLMNOPQ_" + "a1B2c3D4e5" * 6,
    ],
)
def test_github_token_is_found_when_prefix_and_length_match(token: str) -> None:
    text = f"GITHUB_TOKEN={token}"
    assert spans(text, detect_github_token(text)) == [token]


def test_github_token_is_not_found_when_too_short() -> None:
    assert detect_github_token("ghp_short and light_ghp_x") == []


def test_gitlab_token_is_found_when_prefixed_glpat() -> None:
    text = "export GITLAB_TOKEN=glpat-TEST1234abcdEFGH5678"
    assert spans(text, detect_gitlab_token(text)) == ["glpat-TEST1234abcdEFGH5678"]


def test_private_key_block_is_found_header_to_footer_when_complete() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7FAKE\nabc==\n-----END RSA PRIVATE KEY-----"
    text = f"key:\n{block}\nthanks"
    assert spans(text, detect_private_key(text)) == [block]


def test_private_key_is_found_with_its_body_when_the_footer_is_missing() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmUAAAAEbm9uZQ\n\nthat was it"
    assert spans(text, detect_private_key(text)) == [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmUAAAAEbm9uZQ"
    ]


def test_private_key_is_not_found_when_block_is_public() -> None:
    text = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----\n-----BEGIN CERTIFICATE-----"
    assert detect_private_key(text) == []


def test_jwt_is_found_when_header_decodes_to_json_with_alg() -> None:
    text = f"Authorization: Bearer {JWT}"
    assert spans(text, detect_jwt(text)) == [JWT]


def test_jwt_is_not_found_when_header_is_not_a_jwt_header() -> None:
    fake = base64.urlsafe_b64encode(b'{"hello":"world"}').decode().rstrip("=")
    assert detect_jwt(f"token {fake}.eyJhYmMiOjF9.sig") == []
    assert detect_jwt("The format is eyJ...header.payload.signature") == []


def test_secret_is_found_inside_base64_when_the_blob_decodes_to_text() -> None:
    blob = base64.b64encode(f"OPENAI_API_KEY={OPENAI_PROJECT}\n".encode()).decode()
    text = f"decode this: {blob}"
    (finding,) = detect_base64_secrets(text)
    assert (finding.kind, finding.detail) == ("openai_key", "base64")
    assert text[finding.start : finding.end] == blob


def test_secret_is_found_when_base64_is_nested_twice() -> None:
    inner = base64.b64encode(f"token={OPENAI_PROJECT}".encode())
    blob = base64.b64encode(inner).decode()
    assert [f.kind for f in detect_base64_secrets(f"x {blob}")] == ["openai_key"]


def test_base64_is_ignored_when_it_decodes_to_binary_or_plain_text() -> None:
    binary = base64.b64encode(secrets.token_bytes(48)).decode()
    prose = base64.b64encode(b"Hello team, the build for release 4.2 is green.").decode()
    assert detect_base64_secrets(f"{binary} {prose}") == []


def test_every_kind_is_found_when_running_all_secret_detectors() -> None:
    text = f"{OPENAI_PROJECT} {ANTHROPIC} AKIAIOSFODNN7EXAMPLE {JWT} glpat-TEST1234abcdEFGH5678"
    kinds = {f.kind for f in detect_secrets(text)}
    assert kinds == {"openai_key", "anthropic_key", "aws_access_key_id", "jwt", "gitlab_token"}
    assert {f.kind for f in detect_secrets(text, kinds=frozenset({"jwt"}))} == {"jwt"}


def test_key_is_found_in_the_original_text_when_hidden_with_homoglyphs_and_zero_width() -> None:
    disguised = "sk-pr\u043ej-TESTONLYabc123DEF456\u200bghi789JKL012mno345PQR678stu"  # a Cyrillic o
    text = f"key {disguised} end"
    assert spans(text, detect_openai_key(text)) == [disguised]
