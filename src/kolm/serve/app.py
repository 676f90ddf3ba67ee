"""The OpenAI-compatible HTTP API: routes, streaming (SSE), API-key check, body limit and metrics.

    GET  /health                 200 when the model is loaded, 503 while loading
    GET  /metrics                Prometheus text format
    GET  /v1/models              the one served model
    POST /v1/completions         prompt(s) -> text
    POST /v1/chat/completions    messages -> reply, through the tokenizer's chat template

Generation runs on the continuous-batching engine (`kolm.infer.batch`); each
HTTP request submits one engine request per choice and reads its events from
an asyncio queue the engine's worker thread fills. A streaming client that
disconnects cancels its requests, and their batch rows are freed before the
next decode step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kolm.errors import KolmError
from kolm.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from kolm.serve.schemas import APIError, ChatRequest, CompletionRequest, error_body, parse_request

__all__ = ["ServeSettings", "ServerState", "create_app"]


@dataclass
class ServeSettings:
    """What the HTTP layer enforces."""

    model_name: str
    api_key: str | None = None
    max_tokens_cap: int = 2048  # largest max_tokens a request may ask for
    max_body_bytes: int = 1 << 20


class ServerState:
    """The engine once loaded (None while loading), the load error if any, and the metrics."""

    def __init__(self) -> None:
        self.engine: Any | None = None  # kolm.infer.batch.BatchEngine
        self.load_error: str | None = None
        self.metrics = ServerMetrics()
        self.started = int(time.time())

    def ready(self, engine: Any) -> None:
        self.engine = engine
        self.metrics.bind(engine.stats)


# ----------------------------------------------------------------------------
# ASGI middleware: body size limit, API key, request counting


class _Guard:
    """Pure ASGI middleware: refuses oversized bodies (413), checks the API key on /v1 (401), counts requests."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: ServerMetrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path.startswith(("/v1/", "/health", "/metrics")) else None

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start" and endpoint is not None:
                # Counted when the status is sent, so a client that reads /metrics next already sees it.
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        error = self._check(scope)
        if error is not None:
            await _send_error(counting_send, error)
            return
        limit, seen = self.settings.max_body_bytes, 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, counting_send)
        except _BodyTooLarge:
            await _send_error(counting_send, _too_large(limit))

    def _check(self, scope: dict) -> APIError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return _too_large(self.settings.max_body_bytes)
        key = self.settings.api_key
        if key and scope.get("path", "").startswith("/v1/"):
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), key.encode()):
                return APIError(
                    401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key"
                )
        return None


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than {limit} bytes", code="request_too_large")


async def _send_error(send: Any, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------
# Routes


def create_app(settings: ServeSettings, state: ServerState) -> FastAPI:
    """The FastAPI app for one model; generation goes to `state.engine` once it is set."""
    app = FastAPI(title="kolm serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_Guard, settings=settings, metrics=state.metrics)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"{type(exc).__name__}: {exc}", "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is not None:
            return JSONResponse({"status": "ok", "model": settings.model_name})
        if state.load_error:
            return JSONResponse({"status": "error", "message": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def model_card() -> dict[str, Any]:
        card = {"id": settings.model_name, "object": "model", "created": state.started, "owned_by": "kolm"}
        if state.engine is not None and state.engine.max_positions:
            card["max_model_len"] = state.engine.max_positions
        return card

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != settings.model_name:
            raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return model_card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = parse_request(await _json(request), CompletionRequest)
        engine = _engine(state, settings, req.model)
        prompts = [engine.encode(p) for p in req.prompts()]
        return await _generate(request, engine, state, settings, req, prompts, "text_completion", chat_eos=None)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = parse_request(await _json(request), ChatRequest)
        engine = _engine(state, settings, req.model)
        from kolm.infer.generate import chat_eos_ids

        tokenizer = engine.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise APIError(400, "this model's tokenizer has no chat template; use /v1/completions", param="messages")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001 - a template may reject a role order; say so to the client
            raise APIError(400, f"the chat template rejected these messages: {exc}", param="messages") from None
        prompt = engine.encode(text)
        return await _generate(
            request, engine, state, settings, req, [prompt], "chat.completion", chat_eos=chat_eos_ids(tokenizer)
        )

    return app


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})") from None


def _engine(state: ServerState, settings: ServeSettings, model: str | None) -> Any:
    if state.engine is None:
        message = state.load_error or "the model is still loading; retry when GET /health returns 200"
        raise APIError(503, message, type="service_unavailable", headers={"Retry-After": "1"})
    if model is not None and model != settings.model_name:
        raise APIError(
            404,
            f"The model '{model}' does not exist; this server serves '{settings.model_name}'",
            param="model",
            code="model_not_found",
        )
    return state.engine


# ----------------------------------------------------------------------------
# Generation: submit one engine request per choice, then answer or stream


def _sampling(
    engine: Any, settings: ServeSettings, req: ChatRequest | CompletionRequest, prompt: list[int], chat_eos: Any
) -> Any:
    """SamplingParams for one prompt, after the per-request limits (context, server cap)."""
    from kolm.infer.sampling import SamplingParams

    ctx = engine.max_positions
    asked = req.token_limit()
    param = "messages" if isinstance(req, ChatRequest) else "prompt"
    if asked is not None and asked > settings.max_tokens_cap:
        raise APIError(
            400, f"max_tokens {asked} is above this server's limit of {settings.max_tokens_cap}", param="max_tokens"
        )
    if ctx and (len(prompt) >= ctx or (asked is not None and len(prompt) + asked > ctx)):
        raise APIError(
            400,
            f"This model's maximum context length is {ctx} tokens. However, you requested "
            f"{len(prompt) + (asked or 1)} tokens ({len(prompt)} in the prompt, {asked or 1} for the completion). "
            "Please reduce the length of the prompt or the completion.",
            param=param,
            code="context_length_exceeded",
        )
    room = (ctx - len(prompt)) if ctx else settings.max_tokens_cap
    return SamplingParams(
        max_new_tokens=asked if asked is not None else min(settings.max_tokens_cap, room),
        temperature=req.temperature,
        top_k=req.top_k,
        top_p=req.top_p,
        repetition_penalty=req.repetition_penalty,
        seed=req.seed,
        stop=req.stops(),
        eos_token_ids=chat_eos,
    )


@dataclass
class _Choice:
    index: int
    prompt_index: int
    request: Any = None
    text: str = ""
    finish_reason: str | None = None
    tokens: int = 0


async def _generate(
    http: Request,
    engine: Any,
    state: ServerState,
    settings: ServeSettings,
    req: ChatRequest | CompletionRequest,
    prompts: list[list[int]],
    kind: str,
    chat_eos: Any,
) -> Response:
    from dataclasses import replace

    from kolm.infer.batch import QueueFullError

    params = [_sampling(engine, settings, req, p, chat_eos) for p in prompts]
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    choices: list[_Choice] = []
    lp = req.logprobs_n()
    try:
        for pi, (prompt, p) in enumerate(zip(prompts, params)):
            for j in range(req.n):
                choice = _Choice(index=len(choices), prompt_index=pi)
                # With n > 1 each choice gets its own seed, so a seeded request still returns n different samples.
                cp = replace(p, seed=p.seed + j) if p.seed is not None and j else p
                choice.request = engine.submit(prompt, cp, lp, sink=_sink(loop, events, choice.index))
                choices.append(choice)
    except QueueFullError as exc:
        for c in choices:
            c.request.cancel()
        raise APIError(429, str(exc), type="rate_limit_exceeded", code="rate_limit_exceeded",
                       headers={"Retry-After": str(exc.retry_after)}) from None  # fmt: skip
    except KolmError as exc:
        for c in choices:
            c.request.cancel()
        raise APIError(400, str(exc)) from None
    from kolm.serve.responses import Responder

    out = Responder(kind, settings.model_name, choices, prompts, lp is not None)
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return _SSEResponse(_stream(out, events, choices, state, usage), choices, media_type="text/event-stream")
    return await _collect(http, out, events, choices, state)


def _sink(loop: asyncio.AbstractEventLoop, events: asyncio.Queue, index: int) -> Any:
    def put(event: Any) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (index, event))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass

    return put


async def _collect(http: Request, out: Any, events: asyncio.Queue, choices: list[_Choice], state: ServerState) -> Any:
    """Wait for every choice to finish; a client that hangs up cancels them."""
    pending = len(choices)
    try:
        while pending:
            try:
                index, event = await asyncio.wait_for(events.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await http.is_disconnected():
                    return Response(status_code=499)
                continue
            choice = choices[index]
            if event.kind == "error":
                raise APIError(500, event.message, type="server_error")
            out.add(choice, event)
            if event.kind == "done":
                state.metrics.observe(choice.request)
                pending -= 1
        return JSONResponse(out.final())
    finally:
        for c in choices:
            c.request.cancel()


async def _stream(
    out: Any, events: asyncio.Queue, choices: list[_Choice], state: ServerState, include_usage: bool
) -> AsyncIterator[bytes]:
    """SSE lines: `data: {chunk}` per piece of text, the finish chunks, usage if asked, then `data: [DONE]`."""
    for chunk in out.opening_chunks(include_usage):
        yield _sse(chunk)
    pending = len(choices)
    while pending:
        index, event = await events.get()
        choice = choices[index]
        if event.kind == "error":
            # Headers are gone already: the error travels as a chunk, then the stream closes.
            yield _sse(error_body(event.message, "server_error"))
            return
        chunk = out.add(choice, event, include_usage)
        if chunk is not None:
            yield _sse(chunk)
        if event.kind == "done":
            state.metrics.observe(choice.request)
            pending -= 1
    if include_usage:
        yield _sse(out.usage_chunk())
    yield b"data: [DONE]\n\n"


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class _SSEResponse(StreamingResponse):
    """A streaming response that cancels its engine requests however it ends (finished, error, disconnect)."""

    def __init__(self, body: AsyncIterator[bytes], choices: list[_Choice], **kwargs: Any):
        super().__init__(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, **kwargs)
        self._choices = choices
        self._body = body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for c in self._choices:
                c.request.cancel()
            await self._body.aclose()  # type: ignore[attr-defined]
