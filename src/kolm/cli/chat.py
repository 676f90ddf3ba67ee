"""`kolm chat`: talk to a model in the terminal, streaming its replies through the tokenizer's chat template.

Commands inside the chat: `/reset` forgets the conversation, `/exit` (or
Ctrl-D) quits. The oldest turns are dropped when the conversation no longer
fits in the model's context. With `--server URL` the conversation goes to a
running OpenAI-compatible server (`kolm serve`) instead of a local model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

HELP_LINE = "대화를 시작하세요. /reset 새 대화, /exit 종료 (/reset starts over, /exit quits)"


def chat_loop(
    engine: Any,
    params: Any,
    lines: Iterable[str],
    write: Callable[[str], None],
    system: str | None = None,
    show_prompt: bool = True,
) -> list[dict[str, str]]:
    """Run the conversation over input `lines`; `write` prints text. Returns the final message history."""
    remote = isinstance(engine, ServerChat)
    tokenizer = None if remote else engine.tokenizer
    base: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    messages = list(base)
    limit = None if remote else engine.max_positions
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = list(base)
            write("(새 대화 / conversation reset)\n")
            continue
        messages.append({"role": "user", "content": text})
        if show_prompt:
            write("모델> ")
        reply = []
        if remote:
            for piece in engine.stream_messages(messages, params, keep=len(base)):
                reply.append(piece)
                write(piece)
            write("\n")
            messages.append({"role": "assistant", "content": "".join(reply).strip()})
            continue
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # Drop the oldest turns (never the system message) until prompt + reply fit the context.
        while (
            limit
            and len(engine.encode(prompt)) + min(params.max_new_tokens, limit // 2) > limit
            and len(messages) > len(base) + 1
        ):
            del messages[len(base)]
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for piece in engine.stream(prompt, params):
            reply.append(piece)
            write(piece)
        write("\n")
        messages.append({"role": "assistant", "content": "".join(reply).strip()})
    return messages


class ServerChat:
    """The conversation sent to a running OpenAI-compatible server, its replies streamed back."""

    def __init__(self, url: str, api_key: str | None = None):
        from openai import OpenAI

        url = url.rstrip("/")
        self.client = OpenAI(base_url=url if url.endswith("/v1") else url + "/v1", api_key=api_key or "none")
        try:
            self.model = self.client.models.list().data[0].id
        except Exception as exc:  # noqa: BLE001 - connection refused, bad key, not an OpenAI server: one line
            from kolm.errors import KolmError

            raise KolmError(f"cannot reach the server at {url} ({type(exc).__name__}: {exc})") from None

    def stream_messages(self, messages: list[dict[str, str]], params: Any, keep: int = 0) -> Iterator[str]:
        """Stream a reply; drops the oldest turns (after the first `keep`) while the server says it is too long."""
        import openai

        while True:
            try:
                stream = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    stream=True,
                    extra_body={"top_k": params.top_k, "repetition_penalty": params.repetition_penalty},
                )
                break
            except openai.BadRequestError as exc:
                if getattr(exc, "code", None) != "context_length_exceeded" or len(messages) <= keep + 1:
                    raise _server_error(exc) from None
                del messages[keep]
            except openai.APIError as exc:
                raise _server_error(exc) from None
        with stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content


def _server_error(exc: Exception) -> Exception:
    from kolm.errors import KolmError

    message = getattr(exc, "message", None) or str(exc)
    return KolmError(f"the server refused the request: {message}")


def _stdin_lines(prompt: str) -> Iterable[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def command(
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="model dir (e.g. runs/<name>/finetune/sft/model), adapter dir or run dir"
    ),
    server: Optional[str] = typer.Option(
        None, "--server", help="talk to a running server instead, e.g. http://127.0.0.1:8000 (kolm serve)"
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="KOLM_API_KEY", help="key for --server"),
    base_model: Optional[Path] = typer.Option(
        None, "--base-model", help="base model of an adapter (default: recorded in the adapter)"
    ),
    system: Optional[str] = typer.Option(None, "--system", help="system message (시스템 프롬프트)"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", min=1, help="tokens per reply at most"),
    temperature: float = typer.Option(0.7, "--temperature", "-t", min=0.0, help="0 = greedy"),
    top_k: int = typer.Option(50, "--top-k", min=0, help="0 = off"),
    top_p: float = typer.Option(0.9, "--top-p", min=0.01, max=1.0, help="1 = off"),
    repetition_penalty: float = typer.Option(1.1, "--repetition-penalty", help="1 = off"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (as saved), fp32, bf16, fp16"),
    quant: Optional[str] = typer.Option(
        None,
        "--quant",
        help="quantize on load: int8 (CPU dynamic), int8-wo (CPU int8 weights only), bf16, nf4 / llm-int8 (CUDA, bitsandbytes); default none (양자화)",
    ),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Chat with a model in the terminal (터미널 대화), streaming replies; /reset, /exit."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the output
    import sys

    from kolm.errors import KolmError, UsageError
    from kolm.infer.generate import SamplingParams, chat_eos_ids, generator_for
    from kolm.models.loading import load_model
    from kolm.runtime import resolve_device

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if (model is None) == (server is None):
        raise UsageError("give exactly one of --model DIR or --server URL")
    if server is not None:
        remote = ServerChat(server, api_key)
        params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            seed=seed,
        )
        write(HELP_LINE + "\n")
        chat_loop(remote, params, _stdin_lines("사용자> "), write, system)
        return
    lm, tokenizer = load_model(
        model, device=resolve_device(device), dtype=dtype, base_model=base_model, merge=True, quant=quant
    )
    if not getattr(tokenizer, "chat_template", None):
        raise KolmError(
            f"the tokenizer of {model} has no chat template; train the tokenizer with kolm (it sets one) "
            "or chat with a fine-tuned (sft) model"
        )
    eos = chat_eos_ids(tokenizer)
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        eos_token_ids=eos,
    )
    engine = generator_for(lm, tokenizer)
    write(HELP_LINE + "\n")
    chat_loop(engine, params, _stdin_lines("사용자> "), write, system)
