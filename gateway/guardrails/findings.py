"""What a detector reports, and how overlapping reports are settled."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["CATEGORIES", "Finding", "order_key", "resolve_overlaps"]

PII = "pii"
SECRETS = "secrets"
PROMPT_INJECTION = "prompt_injection"
DENYLIST = "denylist"
CATEGORIES = (PII, SECRETS, PROMPT_INJECTION, DENYLIST)


@dataclass(frozen=True, slots=True)
class Finding:
    """One match. Offsets are in the ORIGINAL text (half-open: text[start:end]).

    A finding carries no copy of the matched value, so findings can be logged as they are.
    `detail` says how it was found ("base64" for a secret inside an encoded blob, the rule for
    deny-list hits, the family for prompt injection); `location` is () for plain text and
    (message index, *path) for `scan_messages`.
    """

    kind: str
    category: str
    start: int
    end: int
    score: float = 1.0
    detail: str = ""
    location: tuple[object, ...] = ()

    def shifted(self, delta: int) -> Finding:
        return replace(self, start=self.start + delta, end=self.end + delta)


# When two findings of one category overlap, the longer wins; on equal length, the kind listed
# first here (most specific first: our own keys are also "sk-" keys, a phone-number-shaped run
# inside an IBAN is part of the IBAN).
_PRIORITY = {
    kind: rank
    for rank, kind in enumerate(
        (
            "private_key",
            "symbiosis_admin_token",
            "symbiosis_key",
            "anthropic_key",
            "openai_key",
            "github_token",
            "gitlab_token",
            "aws_access_key_id",
            "aws_secret_access_key",
            "jwt",
            "azure_openai_key",
            "iban",
            "credit_card",
            "email",
            "bsn",
            "phone",
            "ipv6",
            "ipv4",
        )
    )
}


def resolve_overlaps(findings: Iterable[Finding], *, across_categories: bool = False) -> list[Finding]:
    """Drop findings that overlap a better one of the same category (of any category if asked),
    in the same location; return the rest sorted by location and offset.

    Findings are swept in offset order into clusters of overlapping ones; inside a cluster the
    longest wins, then the kind listed first in _PRIORITY. O(n log n) for any number of findings.
    """
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.location if across_categories else (f.category, *f.location), []).append(f)
    kept: list[Finding] = []
    for group in groups.values():
        group.sort(key=lambda f: (f.start, f.end))
        cluster: list[Finding] = []
        cluster_end = -1
        for f in group:
            if cluster and f.start >= cluster_end:
                kept.extend(_settle(cluster))
                cluster = []
            cluster.append(f)
            cluster_end = max(cluster_end, f.end) if len(cluster) > 1 else f.end
        kept.extend(_settle(cluster))
    kept.sort(key=order_key)
    return kept


def _settle(cluster: list[Finding]) -> list[Finding]:
    if len(cluster) == 1:
        return cluster
    ranked = sorted(
        cluster, key=lambda f: (-(f.end - f.start), _PRIORITY.get(f.kind, len(_PRIORITY)), -f.score, f.start)
    )
    chosen: list[Finding] = []
    for f in ranked:
        if all(f.end <= c.start or c.end <= f.start for c in chosen):
            chosen.append(f)
    return chosen


def order_key(f: Finding) -> tuple[object, ...]:
    """Sort by location, then offset (location parts may mix ints and strings)."""
    return (tuple((isinstance(part, str), part) for part in f.location), f.start, f.end, f.kind)
