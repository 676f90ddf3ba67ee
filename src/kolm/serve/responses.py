"""OpenAI response bodies and stream chunks, built from the engine's events.

One `Responder` per HTTP request gathers the events of all its choices and
writes them in the shape of the endpoint: `chat.completion` /
`chat.completion.chunk` or `text_completion`, with `usage` in every full
response and, when asked, in one last stream chunk whose `choices` is empty.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["Responder", "finish_reason"]


def finish_reason(reason: str | None) -> str | None:
    """Engine reasons -> OpenAI's: EOS and stop strings are both "stop"."""
    return {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop"}.get(reason or "", reason)


class Responder:
    """Accumulates choices and writes response bodies or chunks for one request."""

    def __init__(self, kind: str, model: str, choices: list[Any], prompts: list[list[int]], logprobs: bool):
        self.chat = kind == "chat.completion"
        self.kind = kind
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = model
        self.choices = choices
        self.prompt_tokens = sum(len(p) for p in prompts)
        self.logprobs = logprobs
        self._lp: dict[int, Any] = {c.index: self._empty_logprobs() for c in choices} if logprobs else {}

    # -- pieces -------------------------------------------------------------------

    def _empty_logprobs(self) -> Any:
        if self.chat:
            return {"content": []}
        return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}

    def _logprobs_of(self, choice: Any, event: Any) -> Any:
        """The logprobs of this event's tokens, in the endpoint's shape; also appended to the choice's total."""
        if not self.logprobs:
            return None
        if self.chat:
            part = {
                "content": [
                    {
                        "token": t.token,
                        "logprob": t.logprob,
                        "bytes": t.bytes,
                        "top_logprobs": [
                            {"token": s, "logprob": v, "bytes": list(s.encode("utf-8"))} for _, s, v in t.top
                        ],
                    }
                    for t in event.logprobs
                ]
            }
            self._lp[choice.index]["content"].extend(part["content"])
            return part
        total = self._lp[choice.index]
        offset = len(choice.text) - len(event.text)
        part = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for t in event.logprobs:
            part["tokens"].append(t.token)
            part["token_logprobs"].append(t.logprob)
            part["top_logprobs"].append({s: v for _, s, v in t.top} if t.top else None)
            part["text_offset"].append(offset)
        for key in part:
            total[key].extend(part[key])
        return part

    def _usage(self) -> dict[str, int]:
        completion = sum(c.tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _chunk(self, choices: list[dict[str, Any]], include_usage: bool) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.chat:
            chunk["system_fingerprint"] = None
        if include_usage:
            chunk["usage"] = None
        return chunk

    # -- events -------------------------------------------------------------------

    def opening_chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        """Chat streams open each choice with the assistant role; completions need no opening."""
        if not self.chat:
            return []
        return [
            self._chunk(
                [
                    {
                        "index": c.index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                include_usage,
            )
            for c in self.choices
        ]

    def add(self, choice: Any, event: Any, include_usage: bool = False) -> dict[str, Any] | None:
        """Take one engine event; return the stream chunk it makes (None when there is nothing to send)."""
        if event.kind == "done":
            choice.finish_reason = finish_reason(event.finish_reason)
            choice.tokens = event.completion_tokens
            body: dict[str, Any] = {"index": choice.index, "logprobs": None, "finish_reason": choice.finish_reason}
            if self.chat:
                body["delta"] = {}
            else:
                body["text"] = ""
            return self._chunk([body], include_usage)
        if not event.text and not event.logprobs:
            return None  # text held back (half a syllable, or maybe the start of a stop string)
        choice.text += event.text
        logprobs = self._logprobs_of(choice, event)
        body = {"index": choice.index, "logprobs": logprobs, "finish_reason": None}
        if self.chat:
            body["delta"] = {"content": event.text}
        else:
            body["text"] = event.text
        return self._chunk([body], include_usage)

    def usage_chunk(self) -> dict[str, Any]:
        """The last chunk of a stream that asked for usage: no choices, the totals."""
        chunk = self._chunk([], True)
        chunk["usage"] = self._usage()
        return chunk

    def final(self) -> dict[str, Any]:
        """The whole (non-streamed) response body."""
        choices = []
        for c in self.choices:
            body: dict[str, Any] = {
                "index": c.index,
                "logprobs": self._lp.get(c.index),
                "finish_reason": c.finish_reason,
            }
            if self.chat:
                body["message"] = {"role": "assistant", "content": c.text}
            else:
                body["text"] = c.text
            choices.append(body)
        response = {
            "id": self.id,
            "object": self.kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self._usage(),
        }
        if self.chat:
            response["system_fingerprint"] = None
        return response
