"""A hard budget is never exceeded, whatever a key holder writes in a request.

Each trick is an ordinary request field, sent in a concurrent burst worth several budgets to a
gateway of two workers (tests/hostile/conftest.py). The upstream bills like a real tokenizer and
generates all it is allowed. After each burst: no answer was a 5xx, the ledger spent no more than
the budget, and the ledger holds exactly what the upstream billed (tokens and money).

Requests that cannot be honoured (a limit that is not a whole number, an `n` out of range, a
content that is not text or parts) are refused with a 4xx OpenAI error and never reach the upstream.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from tests.hostile.conftest import BUDGET, EMBEDDINGS, Answer, Rig

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

CHAT, MESSAGES, EMBED = "/v1/chat/completions", "/v1/messages", "/v1/embeddings"
STREAM = {"stream": True, "stream_options": {"include_usage": True}}
CJK = "語" * 2000  # the upstream bills a token a character; a four-characters-a-token guess holds a quarter
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}  # 765 tokens upstream
TOOL = {"type": "function", "function": {"name": "lookup", "description": CJK, "parameters": {}}}


def chat(content: Any = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **fields}


# name: (how many at once, endpoint, body). Each burst is worth several budgets if the hold is wrong.
TRICKS: dict[str, tuple[int, str, dict[str, Any]]] = {
    "max_completion_tokens 1 with max_tokens 3000": (30, CHAT, chat(max_completion_tokens=1, max_tokens=3000)),
    "max_tokens 3000.0": (30, CHAT, chat(max_tokens=3000.0)),
    "max_completion_tokens 0 with max_tokens 99, 150 streams": (
        150,
        CHAT,
        chat(max_completion_tokens=0, max_tokens=99, **STREAM),
    ),
    "n 10, streams": (40, CHAT, chat(n=10, max_tokens=100, **STREAM)),
    "2000-character CJK prompt": (30, CHAT, chat(CJK, max_tokens=1)),
    "embeddings of token arrays": (20, EMBED, {"model": EMBEDDINGS, "input": [[1] * 5000]}),
    "CJK tool definitions": (20, CHAT, chat(max_tokens=10, tools=[TOOL])),
    # combinations
    "streams: n 3, max_completion_tokens 1 with max_tokens 2000, CJK prompt": (
        30,
        CHAT,
        chat(CJK[:500], n=3, max_completion_tokens=1, max_tokens=2000, **STREAM),
    ),
    "four images, max_tokens 500.0, n 2": (
        30,
        CHAT,
        chat([{"type": "text", "text": "compare"}, *[IMAGE] * 4], n=2, max_tokens=500.0),
    ),
    "/v1/messages: CJK system and prompt": (
        30,
        MESSAGES,
        {
            "model": "gpt-test",
            "max_tokens": 10,
            "system": CJK[:1000],
            "messages": [{"role": "user", "content": CJK[:1000]}],
        },
    ),
    "embeddings of CJK strings": (30, EMBED, {"model": EMBEDDINGS, "input": [CJK[:500]] * 2}),
}


def _shaped(answer: Answer, path: str) -> bool:
    """A 4xx in the shape the endpoint's SDK expects (Anthropic's under /v1/messages)."""
    if path == MESSAGES:
        return isinstance(answer.body, dict) and answer.body.get("type") == "error" and bool(answer.error)
    return answer.is_openai_error()


@pytest.mark.parametrize("trick", TRICKS, ids=str)
def test_spend_stays_within_the_hard_budget_and_matches_the_upstream_bill_when(rig: Rig, trick: str):
    count, path, body = TRICKS[trick]

    answers = rig.burst(count, body, path)

    statuses = Counter(a.status for a in answers)
    rig.wait_for_debits()
    spend, billed = rig.spend(), rig.billed_cost()
    assert [a for a in answers if a.status >= 500] == [], statuses
    assert spend <= BUDGET, f"spent {spend} of a hard budget of {BUDGET}; answers {dict(statuses)}"
    assert rig.debited_tokens() == rig.billed_tokens(), "the ledger's tokens are not what the upstream billed"
    assert spend == billed, f"the ledger says {spend}, the upstream billed {billed}"
    assert [a for a in answers if a.status >= 400 and not _shaped(a, path)] == []
    assert [a for a in answers if a.stream and a.status == 200 and not a.done] == [], "streams cut short"


MAX_TOKENS_VALUES = {"-1": -1, "1.5": 1.5, '"ten"': "ten", "1e30": 1e30, "2**64-1": 2**64 - 1, "true": True}
INVALID: dict[str, dict[str, Any]] = {
    **{f"max_tokens {name}": {"max_tokens": value} for name, value in MAX_TOKENS_VALUES.items()},
    **{f"max_completion_tokens {name}": {"max_completion_tokens": value} for name, value in MAX_TOKENS_VALUES.items()},
    **{f"n {name}": {"n": value} for name, value in {"0": 0, "-1": -1, "1.5": 1.5, '"2"': "2", "1000": 1000}.items()},
    "content a number": {"content": 42},
    "content part without a type": {"content": [{"text": "hi"}]},
    "content of nested lists": {"content": [[["hi"]]]},
}


@pytest.mark.parametrize(
    "budget_limit", [Decimal(1000)], ids=["budget 1000"]
)  # room for all: only the checks may refuse
def test_nonsense_limits_and_contents_are_refused_with_an_openai_error_before_the_upstream(rig: Rig):
    requests = []
    for index, fields in enumerate(INVALID.values()):
        marker = {"role": "system", "content": f"case {index}"}  # tells the upstream's records apart
        messages = [marker, {"role": "user", "content": fields.get("content", "hi")}]
        limits = {k: v for k, v in fields.items() if k != "content"}
        requests.append((CHAT, {"model": "gpt-test", "messages": messages, **limits}))

    answers = rig.send(requests)

    reached = {str(r.body["messages"][0]["content"]) for r in rig.upstream.state.requests}
    wrong = {}
    for index, (case, answer) in enumerate(zip(INVALID, answers, strict=True)):
        forwarded = f"case {index}" in reached
        if forwarded or not (400 <= answer.status < 500 and answer.is_openai_error()):
            wrong[case] = f"{answer.status}{' (reached the upstream)' if forwarded else ''}: {str(answer.body)[:100]}"
    assert wrong == {}, "\n".join(f"{case}: {what}" for case, what in wrong.items())
