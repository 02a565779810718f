"""Exact-match scrubbing: whole secrets in text and bytes, split secrets in streamed text."""

from __future__ import annotations

import random
import secrets as stdlib_secrets

import orjson
import pytest

from gateway import scrub
from gateway.scrub import LEAD, REDACTED, Secrets

KEY = "canary" + "7f3a9c2e41b84d6f"  # a self-hosted server's key: no known pattern
OTHER = "sk-ant-" + "b" * 30


def _stream(window: scrub.StreamWindow, pieces: list[str]) -> str:
    return "".join(window.feed(p) for p in pieces) + window.flush()


def _random_pieces(text: str, rng: random.Random, most: int = 5) -> list[str]:
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(1, most)
        pieces.append(text[at : at + size])
        at += size
    return pieces


def test_whole_secret_is_replaced_in_text_and_bytes():
    found = Secrets([KEY, OTHER])
    assert found.text(f"Bearer {KEY} and {OTHER}.") == f"Bearer {REDACTED} and {REDACTED}."
    assert found.bytes(orjson.dumps({"echo": f"auth={KEY}"})) == orjson.dumps({"echo": f"auth={REDACTED}"})


def test_secret_written_with_json_escapes_is_found_in_bytes():
    quoted = 'pa"ss\\word-123456'
    found = Secrets([quoted])
    assert quoted not in found.bytes(orjson.dumps({"a": f"x{quoted}y"})).decode()
    assert orjson.loads(found.bytes(orjson.dumps({"a": f"x{quoted}y"})))["a"] == f"x{REDACTED}y"


def test_short_values_are_not_treated_as_secrets():
    found = Secrets(["EMPTY", "pw", ""])
    assert not found
    assert found.text("EMPTY pw") == "EMPTY pw"


def test_longer_secret_containing_a_shorter_one_is_replaced_whole():
    found = Secrets(["abcdefgh", "abcdefgh-more-secret"])
    assert found.text("x abcdefgh-more-secret y abcdefgh") == f"x {REDACTED} y {REDACTED}"


def test_request_key_is_added_without_changing_the_shared_set():
    shared = Secrets([KEY])
    mine = shared.plus("sk-sym-" + "c" * 43)
    assert mine.text("sk-sym-" + "c" * 43) == REDACTED
    assert shared.text("sk-sym-" + "c" * 43) != REDACTED
    assert shared.plus("sk-sym-" + "c" * 43) is mine
    assert shared.plus(None) is shared


@pytest.mark.parametrize("seed", range(200))
def test_secret_split_across_pieces_never_leaks_more_than_its_lead(seed: int):
    rng = random.Random(seed)
    key = rng.choice([KEY, OTHER, stdlib_secrets.token_urlsafe(rng.randint(6, 40))])
    text = "Sure. " + rng.choice(["", "sk", "canary", "s"]) + key + " and again " + key + " done."
    out = _stream(Secrets([key, KEY]).window(), _random_pieces(text, rng, most=rng.randint(1, 12)))
    assert key[LEAD - 1 :] not in out
    assert out.count(REDACTED) == 2
    assert out.endswith(" done.")


@pytest.mark.parametrize("seed", range(100))
def test_text_without_secrets_is_released_unchanged_and_undelayed(seed: int):
    rng = random.Random(seed)
    words = ["the ", "quick ", "brown ", "canar", "fox ", "sk-", "ant ", "jumps", ". "]
    text = "".join(rng.choice(words) for _ in range(60))
    window = Secrets([KEY, OTHER]).window()
    pieces = _random_pieces(text, rng)
    released = [window.feed(p) for p in pieces]
    assert "".join(released) + window.flush() == text
    held_back = sum(1 for piece, out in zip(pieces, released, strict=True) if piece != out)
    # Only where a secret could begin: the piece that starts holding, one more, and the release.
    assert held_back <= 3 * (text.count("cana") + text.count("sk-a"))


def test_held_prefix_is_released_when_the_secret_does_not_follow():
    window = Secrets([KEY]).window()
    assert window.feed("look: cana") == "look: "
    assert window.feed("ry bird") == "canary bird"
    assert window.flush() == ""


def test_flush_releases_a_prefix_left_at_the_end():
    window = Secrets([KEY]).window()
    assert window.feed("ends with canary7f") == "ends with "
    assert window.flush() == "canary7f"


def test_provider_keys_join_the_configured_secrets(settings):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    settings.SECRET_KEY = "secret-key-" + stdlib_secrets.token_hex(16)
    scrub.reset()
    try:
        scrub.set_provider_keys([KEY, ""])
        found = scrub.current()
        assert found.text(f"{KEY} {settings.METRICS_TOKEN} {settings.SECRET_KEY}") == " ".join([REDACTED] * 3)
        scrub.set_provider_keys([])
        assert KEY in scrub.current().text(KEY)
    finally:
        scrub.reset()
