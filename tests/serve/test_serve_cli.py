"""`kolm serve`, `kolm ui` and `kolm chat --server` on the command line."""

from __future__ import annotations

from servekit import API_KEY
from typer.testing import CliRunner

from kolm.cli.main import build_app


def test_serve_and_ui_help_and_a_bad_model_dir(tmp_path):
    runner = CliRunner()
    res = runner.invoke(build_app(), ["serve", "--help"])
    assert res.exit_code == 0 and "--api-key" in res.output and "127.0.0.1" in res.output
    from kolm.errors import KolmError

    bad = runner.invoke(build_app(), ["serve", "--model", str(tmp_path), "--port", "0", "--no-ui"])
    assert isinstance(bad.exception, KolmError) and "no model" in str(bad.exception)
    both = runner.invoke(build_app(), ["ui"])
    assert isinstance(both.exception, KolmError) and "--server" in str(both.exception)


def test_chat_with_a_running_server(server):
    res = CliRunner().invoke(
        build_app(),
        ["chat", "--server", server.url, "--api-key", API_KEY, "-n", "6", "--seed", "0", "--system", "친절하게"],
        input="안녕하세요\n날씨 어때요?\n/exit\n",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("모델> ") == 2
