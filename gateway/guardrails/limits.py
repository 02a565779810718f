"""Input size caps: characters and an approximate token count, without a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SizeCheck", "approx_tokens", "check_size"]


@dataclass(frozen=True, slots=True)
class SizeCheck:
    ok: bool
    chars: int
    approx_tokens: int
    reason: str = ""  # "" when ok, else which cap was exceeded and by how much


def approx_tokens(text: str) -> int:
    """About four ASCII characters per token (English and code under BPE tokenizers), and one
    token per other character (CJK is about one per character; accented Latin letters, rarer,
    are over-counted, which errs on the safe side). An estimate: a cap, not a bill."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def check_size(text: str, *, max_chars: int | None = None, max_tokens: int | None = None) -> SizeCheck:
    chars = len(text)
    tokens = approx_tokens(text)
    if max_chars is not None and chars > max_chars:
        return SizeCheck(False, chars, tokens, f"{chars} characters, over the cap of {max_chars}")
    if max_tokens is not None and tokens > max_tokens:
        return SizeCheck(False, chars, tokens, f"about {tokens} tokens, over the cap of {max_tokens}")
    return SizeCheck(True, chars, tokens)
