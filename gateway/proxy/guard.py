"""Guardrails on the hot path: a project's policy applied to a request's messages and its answer.

`Rules` (gateway/guardrail_policy.py), the compiled effective policy, comes with the key
snapshot. `check_input` runs before any rate limit, budget or upstream call: a `block` refuses
the request (400 `guardrail_blocked`, naming the policy, the check and where, never the matched
value), a `redact` replaces matches with placeholders before the model sees them, a `flag` only
records. `OutputFilter` does the same for the answer, text chunk by text chunk: it holds back
only what the stream scanner has not yet cleared, so a match split across chunks is still
caught, and a non-streamed answer goes through the same filter in one piece, so both give the
same verdicts.

Every check that found something leaves a verdict: {"where", "check", "action", "count", "kinds"}.
Verdicts carry kinds and counts only, never matched text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway import guardrails
from gateway.guardrail_policy import Rules
from gateway.guardrails import Finding
from gateway.proxy.errors import ProxyError


class GuardrailBlocked(ProxyError):
    status = 400
    code = "guardrail_blocked"


def _verdicts(where: str, actions: Mapping[str, str], findings: Sequence[Finding]) -> list[dict[str, Any]]:
    by_check: dict[str, list[Finding]] = {}
    for finding in findings:
        by_check.setdefault(finding.category, []).append(finding)
    return [
        {
            "where": where,
            "check": check,
            "action": actions[check],
            "count": len(found),
            "kinds": sorted({f.kind for f in found}),
        }
        for check, found in by_check.items()
        if check in actions
    ]


def _where(location: tuple[object, ...]) -> str:
    path = "messages"
    for step in location:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    return path


def _blocked(rules: Rules, where: str, check: str, findings: Sequence[Finding]) -> GuardrailBlocked:
    kinds = ", ".join(sorted({f.kind for f in findings}))
    place = f" in {_where(findings[0].location)}" if where == "input" and findings[0].location else ""
    return GuardrailBlocked(
        f"Blocked by the guardrail policy of {rules.policy_name}: the {where} check '{check}' found "
        f"{kinds}{place}. Remove it and try again, or ask the project owner about the policy."
    )


@dataclass
class InputResult:
    messages: list[Any] | None  # redacted copy, or None when nothing was redacted
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original, for restoring
    verdicts: list[dict[str, Any]] = field(default_factory=list)


def check_input(rules: Rules, messages: Sequence[Mapping[str, object]]) -> InputResult:
    """Apply the input checks to a request's messages (OpenAI or Anthropic shape); raises
    GuardrailBlocked for a `block` that found something."""
    if not rules.input and rules.max_input_tokens is None:
        return InputResult(None)
    if rules.max_input_tokens is not None:
        text = " ".join(part.text for part in guardrails.iter_text_parts(messages))
        size = guardrails.check_size(text, max_tokens=rules.max_input_tokens)
        if not size.ok:
            raise GuardrailBlocked(
                f"Blocked by the guardrail policy of {rules.policy_name}: the input is {size.reason}."
            )
    if not rules.input:
        return InputResult(None)
    local = tuple(check for check in rules.input if check != "classifier")  # the classifier is remote
    findings = guardrails.scan_messages(messages, local, denylist=rules.denylist) if local else []
    verdicts = _verdicts("input", rules.input, findings)
    for check, action in rules.input.items():
        if action == "block" and (hits := [f for f in findings if f.category == check]):
            exc = _blocked(rules, "input", check, hits)
            exc.verdicts = verdicts  # type: ignore[attr-defined]
            raise exc
    redactable = [f for f in findings if rules.input.get(f.category) == "redact"]
    if not redactable:
        return InputResult(None, verdicts=verdicts)
    redacted, mapping = guardrails.redact_messages(messages, redactable)
    return InputResult(list(redacted), mapping, verdicts)


_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z0-9_]{0,40}$")


class OutputFilter:
    """The output checks over an answer's text, fed in pieces as they arrive.

    `feed()` returns the text that may be released now (redacted, placeholders restored when the
    policy says so); `close()` returns the rest. A `block` raises GuardrailBlocked: nothing from
    the violating piece on is released.
    """

    def __init__(self, rules: Rules, mapping: Mapping[str, str] | None = None) -> None:
        self.rules = rules
        self.mapping = dict(mapping or {}) if rules.restore else {}
        self.verdicts: list[dict[str, Any]] = []
        self._scanner = guardrails.StreamScanner(tuple(rules.output), denylist=rules.denylist) if rules.output else None
        # Only the text not released yet is kept (a long answer is not copied once per piece):
        # it starts at offset `_sent` of the answer and runs to `_total`.
        self._pending = ""
        self._sent = 0
        self._total = 0
        self._redact: list[Finding] = []  # to redact, and not wholly released yet
        self._seen: list[Finding] = []
        self._held = ""  # released text waiting for the end of a placeholder to restore it
        # Output placeholders number on from the input's, so one never stands for two values.
        self._placeholders: dict[str, str] = dict(mapping or {})

    def feed(self, piece: str) -> str:
        if not piece:
            return ""
        self._pending += piece
        self._total += len(piece)
        if self._scanner is None:
            return self._release(self._total)
        self._take(self._scanner.feed(piece))
        return self._release(self._scanner.safe_end)

    def close(self) -> str:
        if self._scanner is not None:
            self._take(self._scanner.close())
        released = self._release(self._total)
        rest, self._held = self._held, ""
        return released + (guardrails.restore(rest, self.mapping) if self.mapping else rest)

    def _take(self, findings: list[Finding]) -> None:
        if not findings:
            return
        self._seen.extend(findings)
        self.verdicts = _verdicts("output", self.rules.output, self._seen)
        for check, action in self.rules.output.items():
            if action == "block" and (hits := [f for f in findings if f.category == check]):
                exc = _blocked(self.rules, "output", check, hits)
                exc.verdicts = self.verdicts  # type: ignore[attr-defined]
                raise exc
        self._redact.extend(f for f in findings if self.rules.output.get(f.category) == "redact")

    def _release(self, until: int) -> str:
        for finding in self._redact:  # never release part of a match still to be redacted
            if finding.start < until < finding.end:
                until = finding.start
        if until <= self._sent:
            return ""
        segment_start, cut = self._sent, until - self._sent
        text, self._pending = self._pending[:cut], self._pending[cut:]
        self._sent = until
        if self._redact:
            inside = [f.shifted(-segment_start) for f in self._redact if segment_start <= f.start and f.end <= until]
            if inside:
                text, self._placeholders = guardrails.redact(text, inside, mapping=self._placeholders)
            # a finding that ends before what is released can neither hold text back nor be redacted again
            self._redact = [f for f in self._redact if f.end > until]
        if not self.mapping:
            return text
        text = self._held + text
        partial = _PARTIAL_PLACEHOLDER.search(text)
        cut = partial.start() if partial else len(text)
        self._held = text[cut:]
        return guardrails.restore(text[:cut], self.mapping)


def check_output_text(rules: Rules, text: str, mapping: Mapping[str, str] | None = None) -> tuple[str, OutputFilter]:
    """A whole (non-streamed) answer through the same filter a stream goes through."""
    screen = OutputFilter(rules, mapping)
    return screen.feed(text) + screen.close(), screen
