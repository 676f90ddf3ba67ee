"""The chat page: a Gradio `ChatInterface` over the in-process engine or a running `kolm serve`.

    kolm serve --model runs/tiny          # the page is at http://127.0.0.1:8000/ui
    kolm ui --model runs/tiny             # the page alone, on its own engine
    kolm ui --server http://127.0.0.1:8000/v1   # the page in front of a running server

Answers stream as they are generated. The stop button cancels Gradio's
generator; the generator's `finally` cancels the engine request (or closes the
HTTP stream, which makes the server cancel it), so generation really stops.
Labels are Korean with the English in brackets.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["EngineBackend", "OpenAIBackend", "build_chat_ui", "mount_ui", "EXAMPLES"]

TITLE = "kolm 대화 (chat)"
DESCRIPTION = "한국어 모델과 대화합니다. 답변은 생성되는 대로 표시되며, 중지 버튼으로 언제든 멈출 수 있습니다. (Answers stream as they are generated; Stop really stops.)"
EXAMPLES = [
    "안녕하세요! 자기소개를 해 주세요.",
    "서울의 봄 날씨는 어떤가요?",
    "재미있는 한국 영화를 추천해 주세요.",
]


def _text(content: Any) -> str:
    """Text of a Gradio message content (a string, or a list of parts in Gradio 6)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, dict):
        return content.get("text", "")
    return ""


def to_messages(message: Any, history: list[dict[str, Any]], system: str | None) -> list[dict[str, str]]:
    """OpenAI-style messages from the page's history, the new message and the system prompt."""
    out = [{"role": "system", "content": system}] if system and system.strip() else []
    for m in history:
        if m.get("role") in ("user", "assistant"):
            out.append({"role": m["role"], "content": _text(m.get("content"))})
    out.append({"role": "user", "content": _text(message)})
    return out


class EngineBackend:
    """Streams replies from an in-process `BatchEngine` (looked up on every call: it may still be loading)."""

    def __init__(self, engine: Callable[[], Any]):
        self._engine = engine

    async def stream(
        self, messages: list[dict[str, str]], temperature: float, top_p: float, max_tokens: int
    ) -> AsyncIterator[str]:
        from kolm.infer.generate import chat_eos_ids
        from kolm.infer.sampling import SamplingParams

        engine = self._engine()
        if engine is None:
            yield "(모델을 불러오는 중입니다 / the model is still loading)"
            return
        tok = engine.tokenizer
        prompt = engine.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        ctx = engine.max_positions
        # Drop the oldest turns (never the system message) until the prompt leaves room for a reply.
        while ctx and len(prompt) + 16 > ctx and len(messages) > 2:
            messages = messages[:1] + messages[2:] if messages[0]["role"] == "system" else messages[1:]
            prompt = engine.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        room = ctx - len(prompt) if ctx else max_tokens
        if room <= 0:
            yield "(대화가 너무 깁니다 / the conversation is longer than the model's context)"
            return
        params = SamplingParams(
            max_new_tokens=min(int(max_tokens), room),
            temperature=float(temperature),
            top_p=float(top_p),
            eos_token_ids=chat_eos_ids(tok),
        )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # loop closed
                pass

        request = engine.submit(prompt, params, sink=sink)
        try:
            while True:
                event = await events.get()
                if event.kind == "error":
                    yield f"\n(오류 / error: {event.message})"
                    return
                if event.text:
                    yield event.text
                if event.kind == "done":
                    return
        finally:
            request.cancel()  # the stop button (or a closed tab) ends up here: free the batch row


class OpenAIBackend:
    """Streams replies from an OpenAI-compatible server (a running `kolm serve`)."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None):
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0)
        self.model = model

    async def stream(
        self, messages: list[dict[str, str]], temperature: float, top_p: float, max_tokens: int
    ) -> AsyncIterator[str]:
        if self.model is None:
            self.model = (await self.client.models.list()).data[0].id
        stream = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=temperature,
            top_p=top_p,
            max_tokens=int(max_tokens),
            stream=True,
        )
        try:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            await stream.close()  # closing the connection makes the server cancel the request


def build_chat_ui(backend: EngineBackend | OpenAIBackend, max_tokens: int = 512) -> Any:
    """The chat page as a Gradio Blocks app (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    async def respond(
        message: Any, history: list[dict[str, Any]], system: str, temperature: float, top_p: float, limit: int
    ) -> AsyncIterator[str]:
        reply = ""
        async for piece in backend.stream(to_messages(message, history, system), temperature, top_p, limit):
            reply += piece
            yield reply

    return gr.ChatInterface(
        respond,
        chatbot=gr.Chatbot(label="대화 (Chat)", height=420),
        textbox=gr.Textbox(
            placeholder="메시지를 입력하세요 (Type a message)",
            show_label=False,
            submit_btn="보내기 (Send)",
            stop_btn="중지 (Stop)",
        ),
        additional_inputs=[
            gr.Textbox(value="", label="시스템 프롬프트 (System prompt)", lines=2),
            gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="온도 (Temperature)"),
            gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p"),
            gr.Slider(1, max_tokens, value=min(256, max_tokens), step=1, label="최대 토큰 수 (Max tokens)"),
        ],
        additional_inputs_accordion=gr.Accordion(label="설정 (Settings)", open=False),
        examples=[[e] for e in EXAMPLES],
        cache_examples=False,
        title=TITLE,
        description=DESCRIPTION,
        concurrency_limit=16,
        analytics_enabled=False,
        fill_height=True,
    )


def mount_ui(app: Any, state: Any, api_key: str | None = None, path: str = "/ui") -> None:
    """Mount the chat page on the server's FastAPI app, over the server's own engine.

    With an API key the page asks for a login: user `kolm`, the key as password.
    """
    import gradio as gr

    blocks = build_chat_ui(EngineBackend(lambda: state.engine))
    auth = ("kolm", api_key) if api_key else None
    gr.mount_gradio_app(app, blocks, path=path, auth=auth, footer_links=[])
