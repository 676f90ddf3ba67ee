"""The OpenAI request bodies `kolm serve` accepts, checked field by field, and OpenAI's error shape.

Every field of a request is either supported, accepted only at its neutral
value (`presence_penalty: 0`, `echo: false`, `tools: []`, ...: sending it
changes nothing, so nothing is ignored), or refused with a 400 that names it.
An unknown field is refused like OpenAI refuses it ("Unrecognized request
argument supplied"). Extensions beyond OpenAI's fields: `top_k` and
`repetition_penalty` (as in vLLM).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "APIError",
    "ChatRequest",
    "CompletionRequest",
    "parse_request",
    "error_body",
]


class APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


_ANY = object()
# Fields we accept only at a value that asks for nothing (OpenAI's defaults): field -> neutral values.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "user": (_ANY,),  # an end-user id for abuse tracking; it changes no output
    "metadata": (_ANY,),
    "store": (None, False),
    "service_tier": (None, "auto", "default"),
    "response_format": (None, {"type": "text"}),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, False, True),
    "functions": (None, []),
    "function_call": (None, "none"),
    "modalities": (None, ["text"]),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
}


class TextPart(BaseModel):
    """A text part of a message's content (images and audio are not supported)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat message. Content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Common(BaseModel):
    """Fields shared by both endpoints."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # extension; 0 = off
    repetition_penalty: float = Field(1.0, gt=0.0)  # extension; 1 = off
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 8:
            raise APIError(400, "stop takes at most 8 strings", param="stop")
        return [s for s in stops if s]


class ChatRequest(_Common):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def logprobs_n(self) -> int | None:
        """None = off, else how many alternatives per token."""
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Common):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=5)

    def token_limit(self) -> int | None:
        return self.max_tokens

    def logprobs_n(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str | list[int]]:
        """The prompts of this request: one string, several strings, token ids, or several id lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise APIError(400, "prompt is empty", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


def _check_fields(body: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Drop neutral fields, refuse unknown ones and unsupported values; return what the model parses."""
    known = set(model.model_fields)
    kept = {}
    for key, value in body.items():
        if key in known:
            kept[key] = value
        elif key in NEUTRAL:
            allowed = NEUTRAL[key]
            if allowed[0] is not _ANY and value not in allowed:
                raise APIError(
                    400, f"{key}={value!r} is not supported by kolm serve", param=key, code="unsupported_parameter"
                )
        else:
            raise APIError(400, f"Unrecognized request argument supplied: {key}", param=key, code="unknown_parameter")
    return kept


def parse_request(body: Any, kind: type[ChatRequest] | type[CompletionRequest]) -> ChatRequest | CompletionRequest:
    """Validate a JSON body; any problem becomes a 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    fields = _check_fields(body, kind)
    try:
        req = kind.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(x) for x in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")
    return req
