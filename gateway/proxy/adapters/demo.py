"""The built-in demo provider: answers without any network, so a new installation can be tried
offline. It is a demo, not a model: it repeats the last user message back. Disabled unless
DEBUG or DEMO_PROVIDER_ENABLED is set."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator

from gateway.selectors import DeploymentSnapshot

_DIMENSIONS = 16


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _answer(payload: dict) -> str:
    messages = payload.get("messages") or []
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    said = _text_of(last.get("content")) if last else ""
    return f"Hello from the Symbiosis Gateway demo model. You said: {said}".strip()


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _prompt_tokens(payload: dict) -> int:
    return sum(_tokens(_text_of(m.get("content"))) for m in payload.get("messages") or [] if isinstance(m, dict))


class _DemoStream:
    def __init__(self, payload: dict) -> None:
        self._payload = payload

    async def __aiter__(self) -> AsyncIterator[dict]:
        answer = _answer(self._payload)
        base = {"id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk"}
        base |= {"created": int(time.time()), "model": self._payload["model"]}
        yield base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for word in answer.split(" "):
            await asyncio.sleep(0)
            yield base | {"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
        yield base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        prompt, completion = _prompt_tokens(self._payload), _tokens(answer)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        yield base | {"choices": [], "usage": usage}

    async def aclose(self) -> None:
        return None


class DemoAdapter:
    async def chat(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        answer = _answer(payload)
        prompt, completion = _prompt_tokens(payload), _tokens(answer)
        return {
            "id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"},
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    async def open_chat_stream(self, deployment: DeploymentSnapshot, payload: dict) -> _DemoStream:
        return _DemoStream(payload)

    async def embeddings(self, deployment: DeploymentSnapshot, payload: dict) -> dict:
        inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        data = []
        for index, item in enumerate(inputs):
            seed = hashlib.sha256(str(item).encode()).digest()
            vector = [(b - 127.5) / 127.5 for b in seed[:_DIMENSIONS]]
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            data.append({"object": "embedding", "index": index, "embedding": [v / norm for v in vector]})
        tokens = sum(_tokens(str(item)) for item in inputs)
        return {
            "object": "list",
            "data": data,
            "model": payload["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
