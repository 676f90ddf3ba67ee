"""Running the server: load the model in the background, serve HTTP with uvicorn, stop cleanly.

    server = Server("runs/tiny", max_batch=16)
    server.run(host="127.0.0.1", port=8000)          # blocks (what `kolm serve` does)

    server = Server(model_dir).start(port=0)          # in a thread, e.g. in tests or notebooks
    print(server.url)                                  # http://127.0.0.1:PORT
    server.stop()

The HTTP port opens at once and `/health` answers 503 until the model is
loaded (through the one loader, `kolm.models.loading.load_model`, which never
runs remote code). The chat page is mounted at `/ui` unless `ui=False`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from pathlib import Path
from typing import Any

from kolm.errors import KolmError

__all__ = ["Server", "API_KEY_ENV", "is_loopback"]

API_KEY_ENV = "KOLM_API_KEY"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """One model behind the OpenAI-compatible API (and the chat page)."""

    def __init__(
        self,
        model: str | Path,
        *,
        base_model: str | Path | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        quant: str | None = None,
        model_name: str | None = None,
        api_key: str | None = None,
        max_batch: int = 16,
        max_queue: int = 64,
        max_tokens_cap: int = 2048,
        max_body_bytes: int = 1 << 20,
        ui: bool = True,
    ):
        from kolm.serve.app import ServerState, ServeSettings, create_app

        self.model_path, self.base_model, self.device, self.dtype = Path(model), base_model, device, dtype
        self.quant = quant
        self.max_batch, self.max_queue = max_batch, max_queue
        self.settings = ServeSettings(
            model_name=model_name or str(model),
            api_key=api_key,
            max_tokens_cap=max_tokens_cap,
            max_body_bytes=max_body_bytes,
        )
        self.state = ServerState()
        self.app = create_app(self.settings, self.state)
        if ui:
            from kolm.serve.ui import mount_ui

            mount_ui(self.app, self.state, api_key=api_key)
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        self.url = ""

    @property
    def engine(self) -> Any:
        """The continuous-batching engine (None until loaded)."""
        return self.state.engine

    def load(self) -> None:
        """Load the model and start the engine; a failure is kept for /health and raised."""
        from kolm.infer.batch import BatchEngine
        from kolm.models.loading import load_model

        try:
            model, tokenizer = load_model(
                self.model_path,
                device=self.device,
                dtype=self.dtype,
                base_model=self.base_model,
                merge=True,
                quant=self.quant,
            )
            engine = BatchEngine(model, tokenizer, max_batch=self.max_batch, max_queue=self.max_queue).start()
        except Exception as exc:
            self.state.load_error = f"loading {self.model_path} failed: {exc}"
            raise
        self.state.ready(engine)

    def _uvicorn_server(self, sock: socket.socket) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level=os.environ.get("KOLM_SERVE_LOG_LEVEL", "warning"),
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="auto",  # the mounted chat page starts its queue on startup
        )
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return uvicorn.Server(config)

    def start(self, host: str = "127.0.0.1", port: int = 0, load: bool = True) -> Server:
        """Serve in a background thread (port 0 picks a free one); load the model unless `load=False`."""
        sock = _bind(host, port)
        self._uvicorn = self._uvicorn_server(sock)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [sock]}, name="kolm-serve", daemon=True
        )
        self._thread.start()
        if load:
            self.load()
        return self

    def run(self, host: str = "127.0.0.1", port: int = 8000, on_ready: Any = None) -> None:
        """Serve in this thread until interrupted; the model loads in the background."""
        sock = _bind(host, port)
        self._uvicorn = self._uvicorn_server(sock)

        def load() -> None:
            try:
                self.load()
            except Exception:  # noqa: BLE001 - reported below, after the server has stopped
                self._uvicorn.should_exit = True
                return
            if on_ready is not None:
                on_ready(self)

        self._loader = threading.Thread(target=load, name="kolm-serve-load", daemon=True)
        self._loader.start()
        try:
            self._uvicorn.run(sockets=[sock])
        finally:
            self.stop()
        if self.state.load_error:
            raise KolmError(self.state.load_error)

    def stop(self) -> None:
        """Stop HTTP and the engine (idempotent)."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.state.engine is not None:
            self.state.engine.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, so the port is known (port 0) and taken before the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise KolmError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
