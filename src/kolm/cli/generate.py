"""`kolm generate`: complete prompts with a trained model (streams when there is one prompt)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    model: Path = typer.Option(
        ..., "--model", "-m", help="model dir (runs/<name>/pretrain/final), adapter dir or run dir"
    ),
    base_model: Optional[Path] = typer.Option(
        None, "--base-model", help="base model of an adapter (default: recorded in the adapter)"
    ),
    prompt: List[str] = typer.Option(..., "--prompt", "-p", help="prompt text; repeat for a batch (프롬프트)"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", min=0, help="tokens to generate at most"),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="0 = greedy"),
    top_k: int = typer.Option(50, "--top-k", min=0, help="sample among the k most likely tokens (0 = off)"),
    top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0, help="nucleus sampling mass (1 = off)"),
    repetition_penalty: float = typer.Option(1.1, "--repetition-penalty", help="> 1 discourages repeats (1 = off)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed for reproducible sampling"),
    stop: List[str] = typer.Option([], "--stop", help="stop string; repeatable"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (as saved), fp32, bf16, fp16"),
    quant: Optional[str] = typer.Option(
        None,
        "--quant",
        help="quantize on load: int8 (CPU dynamic), int8-wo (CPU int8 weights only), bf16, nf4 / llm-int8 (CUDA, bitsandbytes); default none (양자화)",
    ),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="compile the decode step (torch.compile): tens of seconds first, faster tokens after; "
        "fastest on a CPU with --quant int8-wo --dtype bf16 (디코딩 컴파일)",
    ),
    no_stream: bool = typer.Option(False, "--no-stream", help="print only when finished"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Generate text from prompts (텍스트 생성) with kolm's KV-cache engine (HF generate() for other models)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the output
    import time

    from kolm.errors import UsageError
    from kolm.infer.generate import Completion, SamplingParams, generator_for
    from kolm.models.loading import load_model
    from kolm.runtime import resolve_device

    if not 0 < top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    dev = resolve_device(device)
    lm, tokenizer = load_model(model, device=dev, dtype=dtype, base_model=base_model, merge=True, quant=quant)
    engine = generator_for(lm, tokenizer, compile=compile)
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
        stop=list(stop),
    )
    t0 = time.perf_counter()
    if len(prompt) == 1 and not no_stream:
        done = Completion(token_ids=[])
        typer.echo(prompt[0], nl=False)
        for piece in engine.stream(prompt[0], params, done):
            typer.echo(piece, nl=False)
        typer.echo("")
        results = [done]
    else:
        results = engine.generate(list(prompt), params)
        for p, r in zip(prompt, results):
            typer.echo(f"{p}{r.text}")
            typer.echo("---")
    seconds = time.perf_counter() - t0
    tokens = sum(len(r.token_ids) for r in results)
    reasons = ", ".join(sorted({r.finish_reason for r in results}))
    typer.echo(
        f"[{tokens} tokens in {seconds:.2f}s, {tokens / max(seconds, 1e-9):.1f} tok/s; stop: {reasons}]", err=True
    )
