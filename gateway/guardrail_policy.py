"""Guardrail policies: what each check does on the way in and out, and the organisation's floor.

A policy names an action per check: `off`, `flag` (record and count only), `redact` (replace
matches with placeholders such as <EMAIL_1>) or `block` (refuse with 400 `guardrail_blocked`).
Actions are ordered by strictness, off < flag < redact < block. The organisation's policy is the
floor and the default: a project's effective action is the stricter of the two, its deny list is
the union of both, and its input cap the lower one. Pure functions; no database here.

`denied_betas` lists Anthropic beta flags (the `anthropic-beta` header of /v1/messages) that
requests may not turn on, such as those enabling server-side tools or file uploads; the union of
the organisation's and the project's applies. An entry ending in `*` denies every beta it begins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ValidationFailed
from gateway.guardrails import DenyList, DenyListError, compile_denylist

ACTIONS = ("off", "flag", "redact", "block")
# A policy's fields, as the management API, the admin and the GuardrailPolicy table name them
FIELDS = (
    "input",
    "output",
    "denylist",
    "restore_redactions",
    "max_input_tokens",
    "classifier_model",
    "classifier_kind",
    "denied_betas",
)
INPUT_CHECKS = ("pii", "secrets", "prompt_injection", "denylist", "classifier")
OUTPUT_CHECKS = ("pii", "secrets", "denylist")
_NOT_REDACTABLE = frozenset({"prompt_injection", "classifier"})  # a verdict on a whole text, not a span
CLASSIFIER_KINDS = ("moderation", "chat")  # OpenAI's moderation endpoint, or a Llama Guard-style chat model

# The floor when administrators have set none.
DEFAULT_INPUT = {"pii": "flag", "secrets": "block", "prompt_injection": "flag", "denylist": "block"}
DEFAULT_OUTPUT: dict[str, str] = {}  # output checks hold streamed text back: organisations opt in


@dataclass(frozen=True)
class Policy:
    input: dict[str, str] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)
    denylist: tuple[str, ...] = ()
    restore_redactions: bool = False
    max_input_tokens: int | None = None
    classifier_model: str = ""  # a public model of this gateway that classifies the input
    classifier_kind: str = "moderation"
    denied_betas: tuple[str, ...] = ()  # Anthropic betas requests may not turn on ("files-api-*")

    def as_json(self) -> dict[str, Any]:
        return {
            "input": dict(self.input),
            "output": dict(self.output),
            "denylist": list(self.denylist),
            "restore_redactions": self.restore_redactions,
            "max_input_tokens": self.max_input_tokens,
            "classifier_model": self.classifier_model or None,
            "classifier_kind": self.classifier_kind,
            "denied_betas": list(self.denied_betas),
        }


DEFAULT_FLOOR = Policy(input=dict(DEFAULT_INPUT), output=dict(DEFAULT_OUTPUT))


def _actions(value: Any, checks: tuple[str, ...], where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed(f"{where} must be an object of check -> action.", field=where)
    actions: dict[str, str] = {}
    for check, action in value.items():
        if check not in checks:
            raise ValidationFailed(
                f"{where}: unknown check {check!r}; the checks are {', '.join(checks)}.", field=where
            )
        if action not in ACTIONS:
            raise ValidationFailed(
                f"{where}.{check}: unknown action {action!r}; the actions are {', '.join(ACTIONS)}.", field=where
            )
        if action == "redact" and check in _NOT_REDACTABLE:
            raise ValidationFailed(f"{where}.{check} cannot redact; use flag or block.", field=where)
        actions[check] = action
    return actions


def validate(data: Mapping[str, Any]) -> Policy:
    """A policy from its JSON form (the management API's, the admin's), or ValidationFailed."""
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    denylist = data.get("denylist") or []
    if not isinstance(denylist, list) or not all(isinstance(t, str) and t.strip() for t in denylist):
        raise ValidationFailed('denylist is a list of terms, or "re:<regex>" patterns.', field="denylist")
    if len(denylist) > 1000:
        raise ValidationFailed("denylist holds at most 1000 entries.", field="denylist")
    try:
        compile_denylist(denylist)
    except DenyListError as exc:
        raise ValidationFailed(f"denylist: {exc}", field="denylist") from None
    restore = data.get("restore_redactions", False)
    if not isinstance(restore, bool):
        raise ValidationFailed("restore_redactions is true or false.", field="restore_redactions")
    cap = data.get("max_input_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ValidationFailed(
            "max_input_tokens is a whole number of tokens, 1 or more, or null.", field="max_input_tokens"
        )
    classifier_model = data.get("classifier_model") or ""
    if not isinstance(classifier_model, str) or len(classifier_model) > 128:
        raise ValidationFailed(
            "classifier_model is the name of one of this gateway's models.", field="classifier_model"
        )
    classifier_kind = data.get("classifier_kind") or "moderation"
    if classifier_kind not in CLASSIFIER_KINDS:
        raise ValidationFailed(f"classifier_kind is one of {', '.join(CLASSIFIER_KINDS)}.", field="classifier_kind")
    denied_betas = data.get("denied_betas") or []
    if not isinstance(denied_betas, list) or not all(
        isinstance(b, str) and _BETA.fullmatch(b.strip()) for b in denied_betas
    ):
        raise ValidationFailed(
            'denied_betas is a list of Anthropic beta names such as "files-api-2025-04-14", or prefixes ending '
            'in "*" such as "web-search-*".',
            field="denied_betas",
        )
    actions = _actions(data.get("input"), INPUT_CHECKS, "input")
    if actions.get("classifier", "off") != "off" and not classifier_model:
        raise ValidationFailed("The classifier check needs a classifier_model.", field="classifier_model")
    return Policy(
        input=actions,
        output=_actions(data.get("output"), OUTPUT_CHECKS, "output"),
        denylist=tuple(dict.fromkeys(t.strip() for t in denylist)),
        restore_redactions=restore,
        max_input_tokens=cap,
        classifier_model=classifier_model,
        classifier_kind=classifier_kind,
        denied_betas=tuple(dict.fromkeys(b.strip() for b in denied_betas)),
    )


_BETA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\*?")


def _stricter(a: str, b: str) -> str:
    return max(a, b, key=ACTIONS.index)


def effective(floor: Policy, project: Policy | None) -> Policy:
    """The policy that applies: the project's, made at least as strict as the floor everywhere."""
    if project is None:
        return floor

    def merged(floor_actions: dict[str, str], own: dict[str, str], checks: tuple[str, ...]) -> dict[str, str]:
        return {
            check: _stricter(floor_actions.get(check, "off"), own.get(check, floor_actions.get(check, "off")))
            for check in checks
            if check in floor_actions or check in own
        }

    caps = [c for c in (floor.max_input_tokens, project.max_input_tokens) if c is not None]
    return Policy(
        input=merged(floor.input, project.input, INPUT_CHECKS),
        output=merged(floor.output, project.output, OUTPUT_CHECKS),
        denylist=tuple(dict.fromkeys(floor.denylist + project.denylist)),
        restore_redactions=project.restore_redactions,
        max_input_tokens=min(caps) if caps else None,
        classifier_model=project.classifier_model or floor.classifier_model,
        classifier_kind=project.classifier_kind if project.classifier_model else floor.classifier_kind,
        denied_betas=tuple(dict.fromkeys(floor.denied_betas + project.denied_betas)),
    )


def looser_than(floor: Policy, project: Policy) -> list[str]:
    """Where a project's own policy asks for less than the floor (it is raised to the floor)."""
    notes = []
    for where, own, base in (("input", project.input, floor.input), ("output", project.output, floor.output)):
        for check, action in own.items():
            if ACTIONS.index(action) < ACTIONS.index(base.get(check, "off")):
                notes.append(f"{where}.{check}: {action} is raised to the organisation's {base[check]}")
    return notes


@dataclass(frozen=True, slots=True)
class Rules:
    """A project's effective guardrail policy, ready to run (deny list compiled)."""

    policy_name: str
    input: Mapping[str, str]  # check -> action, checks that are off left out
    output: Mapping[str, str]
    denylist: DenyList | None = None
    restore: bool = False
    max_input_tokens: int | None = None
    classifier_model: str = ""
    classifier_kind: str = "moderation"
    denied_betas: tuple[str, ...] = ()

    @classmethod
    def of(cls, policy: Policy, *, name: str) -> Rules:
        return cls(
            policy_name=name,
            input={c: a for c, a in policy.input.items() if a != "off"},
            output={c: a for c, a in policy.output.items() if a != "off"},
            denylist=compile_denylist(policy.denylist) if policy.denylist else None,
            restore=policy.restore_redactions,
            max_input_tokens=policy.max_input_tokens,
            classifier_model=policy.classifier_model,
            classifier_kind=policy.classifier_kind,
            denied_betas=policy.denied_betas,
        )

    @property
    def checks_output(self) -> bool:
        return bool(self.output) or self.restore

    def denied_beta(self, betas: Iterable[str]) -> str | None:
        """The first of `betas` the policy denies (an entry ending in "*" denies a prefix), if any."""
        for beta in betas:
            for denied in self.denied_betas:
                if beta == denied or (denied.endswith("*") and beta.startswith(denied[:-1])):
                    return beta
        return None


NO_RULES = Rules(policy_name="", input={}, output={})
