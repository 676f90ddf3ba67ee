"""`kolm push` against a small Hub on 127.0.0.1 that speaks the endpoints huggingface_hub calls.

The server implements what `create_repo` + `upload_folder` use: repo
creation, README YAML validation, preupload (every file "regular", so its
bytes travel base64 in the commit) and the NDJSON commit. The client is the
real huggingface_hub, pointed at the server with HF_ENDPOINT.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Hub(BaseHTTPRequestHandler):
    repos: dict  # repo id -> {"private": bool, "files": {path: bytes}, "commits": [message]}
    calls: list  # (method, path, authorization)

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        self.calls.append(("POST", path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer hf_test_token":
            return self._reply(401, {"error": "Invalid credentials"})
        if path == "/api/repos/create":
            body = json.loads(raw)
            repo = f"{body['organization']}/{body['name']}"
            if repo in self.repos:
                return self._reply(409, {"error": "You already created this model repo"})
            self.repos[repo] = {"private": body.get("visibility") == "private", "files": {}, "commits": []}
            return self._reply(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
        if path == "/api/validate-yaml":
            content = json.loads(raw)["content"]
            ok = content.startswith("---\n") and "language: ko" in content and "license: apache-2.0" in content
            return self._reply(200 if ok else 400, {"errors": [] if ok else [{"message": "bad metadata"}]})
        parts = path.split("/")  # /api/models/<user>/<name>/(preupload|commit)/<revision>
        repo = "/".join(parts[3:5])
        if repo not in self.repos:
            return self._reply(404, {"error": "Repository not found"})
        if parts[5] == "preupload":
            files = json.loads(raw)["files"]
            return self._reply(
                200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if parts[5] == "commit":
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            for line in lines:
                if line["key"] == "header":
                    self.repos[repo]["commits"].append(line["value"]["summary"])
                elif line["key"] == "file":
                    self.repos[repo]["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            host = self.headers["Host"]
            return self._reply(200, {"commitUrl": f"http://{host}/{repo}/commit/abc123", "commitOid": "abc123"})
        return self._reply(404, {"error": f"unknown endpoint {path}"})


@pytest.fixture
def hub(monkeypatch, tmp_path):
    handler = type("Hub", (_Hub,), {"repos": {}, "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_the_repo_and_uploads_the_export_with_its_card(hub, model_dir):
    from kolm.export.hub import push

    url = push(model_dir, "tester/kolm-tiny", fmt="hf-llama", private=True)
    assert url.endswith("/tester/kolm-tiny/commit/abc123")
    repo = hub.repos["tester/kolm-tiny"]
    assert repo["private"] is True and repo["commits"] == ["kolm push: hf-llama"]
    assert set(repo["files"]) >= {"README.md", "config.json", "model.safetensors", "tokenizer.json"}
    assert json.loads(repo["files"]["config.json"])["model_type"] == "llama"
    card = repo["files"]["README.md"].decode()
    assert card.startswith("---\n") and "language: ko" in card and "tester/kolm-tiny" in card
    assert "사용법" in card and "How to use" in card
    called = [path for _, path, _ in hub.calls]
    assert called[0] == "/api/repos/create" and "/api/validate-yaml" in called
    assert called[-2:] == ["/api/models/tester/kolm-tiny/preupload/main", "/api/models/tester/kolm-tiny/commit/main"]


def test_push_gguf_through_the_cli(hub, model_dir):
    from typer.testing import CliRunner

    from kolm.cli.main import build_app

    res = CliRunner().invoke(
        build_app(), ["push", "--model", str(model_dir), "--repo", "tester/kolm-gguf", "-f", "gguf", "-q", "q4_0"]
    )
    assert res.exit_code == 0, res.output
    files = hub.repos["tester/kolm-gguf"]["files"]
    assert sorted(files) == ["README.md", "model-Q4_0.gguf"]
    assert files["model-Q4_0.gguf"][:4] == b"GGUF"


def test_push_without_a_token_stops_before_any_request(hub, model_dir, monkeypatch, tmp_path):
    import huggingface_hub.constants

    from kolm.errors import KolmError
    from kolm.export.hub import push

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(KolmError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        push(model_dir, "tester/kolm-tiny")
    assert hub.calls == [] and hub.repos == {}


def test_push_rejects_a_malformed_repo_id(hub, model_dir):
    from kolm.errors import KolmError
    from kolm.export.hub import push

    with pytest.raises(KolmError, match="USER/NAME"):
        push(model_dir, "just-a-name")
    assert hub.calls == []
