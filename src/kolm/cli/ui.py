"""`kolm ui`: the Gradio chat page on its own, over a model (own engine) or a running `kolm serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="model dir, run dir or adapter dir"),
    server: Optional[str] = typer.Option(
        None, "--server", help="URL of a running OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="KOLM_API_KEY", help="key for --server"),
    base_model: Optional[Path] = typer.Option(None, "--base-model", help="base model of an adapter"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(7860, "--port", "-p", min=0, max=65535, help="TCP port"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (as saved), fp32, bf16, fp16"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Open the chat page (채팅 화면) for a model or a running server."""
    from kolm.errors import UsageError

    if (model is None) == (server is None):
        raise UsageError("give exactly one of --model DIR or --server URL")
    from kolm.serve.ui import EngineBackend, OpenAIBackend, build_chat_ui

    if server is not None:
        backend: EngineBackend | OpenAIBackend = OpenAIBackend(_v1(server), api_key)
        limit = 2048
    else:
        from kolm.infer.batch import BatchEngine
        from kolm.models.loading import load_model
        from kolm.runtime import resolve_device

        lm, tokenizer = load_model(
            model, device=resolve_device(device), dtype=None if dtype == "auto" else dtype, base_model=base_model
        )
        engine = BatchEngine(lm, tokenizer).start()
        backend = EngineBackend(lambda: engine)
        limit = engine.max_positions or 2048
    typer.echo(f"chat page (채팅 화면): http://{host}:{port}", err=True)
    build_chat_ui(backend, max_tokens=limit).launch(server_name=host, server_port=port, footer_links=[])


def _v1(url: str) -> str:
    """The API base URL: a bare server address gets /v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"
