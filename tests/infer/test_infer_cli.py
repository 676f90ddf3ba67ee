"""`kolm generate` and `kolm chat` on a tiny model dir."""

from __future__ import annotations

from typer.testing import CliRunner

from kolm.cli.main import build_app


def test_generate_streams_one_prompt(model_dir):
    res = CliRunner().invoke(build_app(), ["generate", "--model", str(model_dir), "--prompt", "오늘은", "-n", "8",
                                           "--temperature", "0"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("오늘은") and "tok/s" in res.output


def test_generate_batch_and_bad_model_dir(model_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(build_app(), ["generate", "-m", str(model_dir), "-p", "오늘은", "-p", "서울의 봄은", "-n", "4",
                                      "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert res.output.count("---") == 2
    from kolm.errors import CheckpointError

    bad = runner.invoke(build_app(), ["generate", "-m", str(tmp_path), "-p", "x"])
    assert isinstance(bad.exception, CheckpointError) and "no model" in str(bad.exception)


def test_chat_loop_reset_and_exit(model_dir):
    res = CliRunner().invoke(build_app(), ["chat", "--model", str(model_dir), "-n", "6", "--seed", "0"],
                             input="안녕하세요\n/reset\n날씨 어때요?\n/exit\n이건 보내지 않음\n")
    assert res.exit_code == 0, res.output
    assert res.output.count("모델> ") == 2 and "conversation reset" in res.output


def test_chat_history_uses_template(model_dir):
    from kolm.cli.chat import chat_loop
    from kolm.infer.engine import Engine, SamplingParams
    from kolm.infer.loading import load_for_generation

    model, tok = load_for_generation(model_dir)
    out: list[str] = []
    msgs = chat_loop(Engine(model, tok), SamplingParams(max_new_tokens=4, temperature=0), ["하나", "둘"], out.append,
                     system="친절하게")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
