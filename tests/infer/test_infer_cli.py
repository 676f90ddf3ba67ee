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


def test_lora_adapter_dir_is_merged_for_generation(model_dir, tmp_path):
    import peft
    import torch

    from kolm.infer.engine import Engine, SamplingParams
    from kolm.infer.loading import load_for_generation
    from kolm.models.registry import load_causal_lm

    base = load_causal_lm(model_dir)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.3)
    lora.save_pretrained(tmp_path / "adapter")
    x = torch.randint(3, 300, (1, 8))
    with torch.no_grad():
        expected = lora(input_ids=x).logits
    model, tok = load_for_generation(tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, expected, atol=1e-4, rtol=0)
    out = Engine(model, tok).generate(["오늘은"], SamplingParams(max_new_tokens=3, temperature=0))
    assert out[0].prompt_tokens > 0
