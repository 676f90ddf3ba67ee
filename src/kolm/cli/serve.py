"""`kolm serve`: an OpenAI-compatible HTTP server (and chat page at /ui) for a model, with continuous batching."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    model: Path = typer.Option(..., "--model", "-m", help="model dir, run dir, fine-tuning task dir or adapter dir"),
    base_model: Optional[Path] = typer.Option(
        None, "--base-model", help="base model of an adapter (default: recorded in the adapter)"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (default: this machine only)"),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port"),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", envvar="KOLM_API_KEY", help="require `Authorization: Bearer KEY` on /v1 (env KOLM_API_KEY)"
    ),
    model_name: Optional[str] = typer.Option(
        None, "--served-model-name", help="model id clients pass as `model` (default: the --model path)"
    ),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="sequences decoded together at most"),
    max_queue: int = typer.Option(64, "--max-queue", min=0, help="requests waiting beyond that; more get 429"),
    max_tokens: int = typer.Option(2048, "--max-tokens", min=1, help="largest max_tokens a request may ask for"),
    max_body_kb: int = typer.Option(1024, "--max-body-kb", min=1, help="largest request body in KiB"),
    ui: bool = typer.Option(True, "--ui/--no-ui", help="mount the chat page at /ui (채팅 화면)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (as saved), fp32, bf16, fp16"),
    quant: Optional[str] = typer.Option(
        None,
        "--quant",
        help="quantize on load: int8 (CPU dynamic), int8-wo (CPU int8 weights only), bf16, nf4 / llm-int8 (CUDA, bitsandbytes); default none (양자화)",
    ),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Serve a model over an OpenAI-compatible API (모델 서빙): /v1/chat/completions, /v1/completions, /ui."""
    from kolm.models.loading import find_model_dir
    from kolm.runtime import resolve_device

    find_model_dir(model)  # a wrong path fails now, in one line, before a port is opened
    from kolm.serve.server import Server, is_loopback

    if not is_loopback(host) and not api_key:
        typer.echo(
            f"warning: listening on {host} without --api-key: anyone who can reach this port can use the model",
            err=True,
        )
    server = Server(
        model,
        base_model=base_model,
        device=resolve_device(device),
        dtype=None if dtype == "auto" else dtype,
        quant=quant,
        model_name=model_name,
        api_key=api_key,
        max_batch=max_batch,
        max_queue=max_queue,
        max_tokens_cap=max_tokens,
        max_body_bytes=max_body_kb * 1024,
        ui=ui,
    )
    shown = f"[{host}]" if ":" in host else host

    def ready(s: Server) -> None:
        typer.echo(f"kolm serve: {s.settings.model_name} ready at http://{shown}:{port}/v1", err=True)
        if ui:
            typer.echo(f"chat page (채팅 화면): http://{shown}:{port}/ui", err=True)

    typer.echo(f"kolm serve: loading {model} (GET /health answers 503 until ready) ...", err=True)
    try:
        server.run(host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:
        pass
