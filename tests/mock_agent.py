"""A coding agent's model, for the real-client matrix (tests/clients): what both mock upstreams
answer for an upstream model whose name contains `agent` (`claude-agent`, `mock-agent`,
`gpt-5-mock-agent`), in their own wire format.

- the last user turn carries tool results: a text that quotes them ("Done. The tool said: ...")
- the prompt says ``Write the text 'X' to the file /path`` and a tool named `Write` is offered
  (Claude Code's): a call of `Write` with `file_path` and `content`
- otherwise: the text `AGENT_GREETING`

Whatever the client's tools, system prompt and conversation look like, the answer is one of these
three, so a real agent (Claude Code) finishes a turn in one or two requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

AGENT_GREETING = "Hello from the mock agent."
WRITE_TOOL = "Write"
_WRITE = re.compile(r"Write the text '([^']*)' to the file (/\S+[^\s.])")


@dataclass(frozen=True)
class Turn:
    text: str
    tool: str | None = None  # a tool to call, with `arguments`
    arguments: dict[str, Any] | None = None


def is_agent(model: str) -> bool:
    return "agent" in model


def agent_turn(prompt: str, tool_results: list[str] | None, tool_names: set[str]) -> Turn:
    """The agent model's next turn, given the last user text, the tool results it carries (None:
    none) and the names of the tools offered."""
    if tool_results is not None:
        return Turn(f"Done. The tool said: {' | '.join(tool_results)[:200]}")
    if (match := _WRITE.search(prompt)) and WRITE_TOOL in tool_names:
        return Turn("I will write the file.", WRITE_TOOL, {"file_path": match[2], "content": match[1]})
    return Turn(AGENT_GREETING)


def text_of(content: Any) -> str:
    """The text of a message's content, in either wire format (a string, or blocks with `text`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return "\n".join(text for text in texts if isinstance(text, str))
    return ""
