"""`kolm chat`: talk to a model in the terminal, streaming its replies through the tokenizer's chat template.

Commands inside the chat: `/reset` forgets the conversation, `/exit` (or
Ctrl-D) quits. The oldest turns are dropped when the conversation no longer
fits in the model's context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    tokenizer = engine.tokenizer
    base: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    messages = list(base)
    limit = engine.max_positions
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
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # Drop the oldest turns (never the system message) until prompt + reply fit the context.
        while (
            limit
            and len(engine.encode(prompt)) + min(params.max_new_tokens, limit // 2) > limit
            and len(messages) > len(base) + 1
        ):
            del messages[len(base)]
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if show_prompt:
            write("모델> ")
        reply = []
        for piece in engine.stream(prompt, params):
            reply.append(piece)
            write(piece)
        write("\n")
        messages.append({"role": "assistant", "content": "".join(reply).strip()})
    return messages


def _stdin_lines(prompt: str) -> Iterable[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def command(
    model: Path = typer.Option(
        ..., "--model", "-m", help="model dir (e.g. runs/<name>/finetune/sft/model), adapter dir or run dir"
    ),
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
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Chat with a model in the terminal (터미널 대화), streaming replies; /reset, /exit."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the output
    import sys

    from kolm.errors import KolmError
    from kolm.infer.generate import SamplingParams, generator_for
    from kolm.models.loading import load_model
    from kolm.runtime import resolve_device

    lm, tokenizer = load_model(model, device=resolve_device(device), dtype=dtype, base_model=base_model, merge=True)
    if not getattr(tokenizer, "chat_template", None):
        raise KolmError(
            f"the tokenizer of {model} has no chat template; train the tokenizer with kolm (it sets one) "
            "or chat with a fine-tuned (sft) model"
        )
    eos = [
        i
        for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>"))
        if i is not None and i != tokenizer.unk_token_id
    ]
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

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    write(HELP_LINE + "\n")
    chat_loop(engine, params, _stdin_lines("사용자> "), write, system)
