"""Screening: the guardrails of a key's policy on a request's input and on its answer.

`Screening.input()` runs before any rate limit, budget or upstream call: a block refuses the
request, a redaction gives the messages to send instead; then the classifier (a remote model)
when the policy asks for it. `Screening.output()` gives a filter for one answer's text (a
choice, a content block) when the policy checks output; what the filters released is `delivered`
(what the log keeps of a screened answer). `verdicts()` gathers what every check found (kinds
and counts, never matched text).
"""

from __future__ import annotations

from typing import Any

from gateway.guardrail_policy import Rules
from gateway.proxy import classifier, guard
from gateway.selectors import KeySnapshot

_SIZE_VERDICT = {"where": "input", "check": "size", "action": "block", "count": 1, "kinds": []}


class Screening:
    __slots__ = ("delivered", "filters", "input_verdicts", "key", "mapping", "rules")

    def __init__(self, key: KeySnapshot) -> None:
        self.key = key
        self.rules: Rules = key.guardrails
        self.input_verdicts: list[dict[str, Any]] = []
        self.filters: list[guard.OutputFilter] = []
        self.mapping: dict[str, str] = {}  # placeholders of the input's redactions
        # What the output filters released (what the log keeps of a screened answer); None until
        # a filter was made, so an answer with no text to screen is logged as it came.
        self.delivered: list[str] | None = None

    @property
    def checks_output(self) -> bool:
        return self.rules.checks_output

    async def input(self, messages: list[Any]) -> list[Any] | None:
        """The input checks on the request's messages: raises GuardrailBlocked for a block; returns
        the redacted messages to send instead, or None when nothing was redacted."""
        rules = self.rules
        if not rules.input and rules.max_input_tokens is None:
            return None
        try:
            result = guard.check_input(rules, messages)
        except guard.GuardrailBlocked as exc:
            self.input_verdicts = getattr(exc, "verdicts", None) or [dict(_SIZE_VERDICT)]
            raise
        self.input_verdicts = result.verdicts
        self.mapping = result.mapping
        if action := rules.input.get("classifier"):
            await self._classify(action, result.messages or messages)
        return result.messages

    async def _classify(self, action: str, messages: list[Any]) -> None:
        rules = self.rules
        outcome = await classifier.classify(self.key, rules, messages)
        verdict = {"where": "input", "check": "classifier", "action": "error", "count": 1, "kinds": []}
        if outcome is None:
            self.input_verdicts.append(verdict)
            if action == "block":
                raise classifier.unavailable(rules)
            return
        flagged, kinds = outcome
        if not flagged:
            return
        self.input_verdicts.append(verdict | {"action": action, "kinds": kinds})
        if action == "block":
            what = f" ({', '.join(kinds)})" if kinds else ""
            raise guard.GuardrailBlocked(
                f"Blocked by the guardrail policy of {rules.policy_name}: the input check 'classifier' flagged "
                f"it{what}. Rephrase it, or ask the project owner about the policy."
            )

    def output(self) -> guard.OutputFilter | None:
        """A filter for one answer's text, or None when the policy does not check output."""
        if not self.rules.checks_output:
            return None
        screen = guard.OutputFilter(self.rules, self.mapping)
        self.filters.append(screen)
        if self.delivered is None:
            self.delivered = []
        return screen

    def whole(self, text: str) -> str:
        """A whole (non-streamed) piece of an answer through its own filter: what may be released."""
        screen = self.output()
        if screen is None:
            return text
        released = screen.feed(text) + screen.close()
        self.delivered.append(released)  # type: ignore[union-attr]
        return released

    def verdicts(self) -> list[dict[str, Any]]:
        found = list(self.input_verdicts)
        for screen in self.filters:
            found.extend(v for v in screen.verdicts if v not in found)
        return found


class OutputSlots:
    """The output filters of a stream, one per slot (an OpenAI choice, an Anthropic content block):
    each slot's text goes through its own filter and is released only as far as it cleared it."""

    __slots__ = ("closed", "filters", "screening")

    def __init__(self, screening: Screening) -> None:
        self.screening = screening
        self.filters: dict[int, guard.OutputFilter] = {}
        self.closed: set[int] = set()

    def open(self, slot: int) -> guard.OutputFilter:
        """The slot's filter, made when the slot first shows up (text or not)."""
        screen = self.filters.get(slot)
        if screen is None:
            screen = self.filters[slot] = self.screening.output()  # type: ignore[assignment]
        return screen  # type: ignore[return-value]

    def feed(self, slot: int, text: str) -> str:
        released = self.open(slot).feed(text)
        if released:
            self.screening.delivered.append(released)  # type: ignore[union-attr]
        return released

    def close(self, slot: int) -> str:
        """What the slot's filter still holds, once (its text is over)."""
        if slot in self.closed or (screen := self.filters.get(slot)) is None:
            return ""
        self.closed.add(slot)
        held = screen.close()
        if held:
            self.screening.delivered.append(held)  # type: ignore[union-attr]
        return held

    def open_slots(self) -> list[int]:
        """The slots whose text never closed (a stream that ended without finishing them)."""
        return [slot for slot in self.filters if slot not in self.closed]
