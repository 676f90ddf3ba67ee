"""`kolm generate` and `kolm chat` on a tiny model dir."""

from __future__ import annotations

from typer.testing import CliRunner

from kolm.cli.main import build_app


def test_generate_streams_one_prompt(model_dir):
    res = CliRunner().invoke(
        build_app(), ["generate", "--model", str(model_dir), "--prompt", "오늘은", "-n", "8", "--temperature", "0"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("오늘은") and "tok/s" in res.output


def test_generate_batch_and_bad_model_dir(model_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        build_app(), ["generate", "-m", str(model_dir), "-p", "오늘은", "-p", "서울의 봄은", "-n", "4", "--seed", "0"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("---") == 2
    from kolm.errors import CheckpointError

    bad = runner.invoke(build_app(), ["generate", "-m", str(tmp_path), "-p", "x"])
    assert isinstance(bad.exception, CheckpointError) and "no model" in str(bad.exception)


def test_chat_loop_reset_and_exit(model_dir):
    res = CliRunner().invoke(
        build_app(),
        ["chat", "--model", str(model_dir), "-n", "6", "--seed", "0"],
        input="안녕하세요\n/reset\n날씨 어때요?\n/exit\n이건 보내지 않음\n",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("모델> ") == 2 and "conversation reset" in res.output


def test_chat_history_uses_template(model_dir):
    from kolm.cli.chat import chat_loop
    from kolm.infer.engine import Engine, SamplingParams
    from kolm.models.loading import load_model

    model, tok = load_model(model_dir)
    out: list[str] = []
    msgs = chat_loop(
        Engine(model, tok),
        SamplingParams(max_new_tokens=4, temperature=0),
        ["하나", "둘"],
        out.append,
        system="친절하게",
    )
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]


def test_lora_adapter_dir_is_merged_for_generation(model_dir, tmp_path):
    import peft
    import torch

    from kolm.infer.engine import Engine, SamplingParams
    from kolm.models.loading import load_model

    base, _ = load_model(model_dir)
    lora = peft.get_peft_model(
        base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.3)
    lora.save_pretrained(tmp_path / "adapter")
    x = torch.randint(3, 300, (1, 8))
    with torch.no_grad():
        expected = lora(input_ids=x).logits
    model, tok = load_model(tmp_path / "adapter", merge=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, expected, atol=1e-4, rtol=0)
    out = Engine(model, tok).generate(["오늘은"], SamplingParams(max_new_tokens=3, temperature=0))
    assert out[0].prompt_tokens > 0


def _main(args, cwd=None):
    """The real console entry point in a subprocess: exit code and stderr as a user sees them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kolm.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_corrupt_weights_are_one_line_errors(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # truncated download
    for args in (
        ["generate", "-m", str(broken), "-p", "x", "-n", "2"],
        ["chat", "-m", str(broken)],
        ["export", "-m", str(broken), "-o", str(tmp_path / "out")],
    ):
        res = _main(args)
        assert res.returncode == 2, (args, res.stderr[-2000:])
        assert res.stderr.startswith("kolm: error:") and str(weights) in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


def test_bad_sampling_option_is_a_one_line_error(model_dir):
    res = _main(["generate", "-m", str(model_dir), "-p", "x", "--repetition-penalty", "0"])
    assert res.returncode == 2 and res.stderr.startswith("kolm: error:") and "repetition_penalty" in res.stderr
    assert "Traceback" not in res.stderr


def test_adapter_saved_in_a_run_loads_from_another_folder(model_dir, tmp_path):
    """The adapter records its base so that it resolves from anywhere; --base-model overrides it."""
    import shutil

    import peft

    from kolm.models.loading import load_model, write_task_info

    run = tmp_path / "runs" / "r"
    base_dir = run / "pretrain" / "final"
    shutil.copytree(model_dir, base_dir)
    base, tok = load_model(base_dir)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    adapter = run / "finetune" / "sft" / "adapter"
    lora.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    write_task_info(adapter, "sft", "lora", [], base_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = _main(
        ["generate", "-m", str(adapter.resolve()), "-p", "오늘은", "-n", "2", "--temperature", "0"], cwd=elsewhere
    )
    assert res.returncode == 0, res.stderr[-2000:]
    moved = tmp_path / "moved"
    shutil.move(str(run), moved)  # the whole run dir moved: the relative record still finds the base
    res = _main(
        ["generate", "-m", str(moved / "finetune" / "sft" / "adapter"), "-p", "오늘은", "-n", "2"], cwd=elsewhere
    )
    assert res.returncode == 0, res.stderr[-2000:]
    res = _main(
        ["chat", "-m", str(moved / "finetune" / "sft" / "adapter"), "--base-model", str(tmp_path / "nope")],
        cwd=elsewhere,
    )
    assert res.returncode == 2 and "--base-model" in res.stderr


def test_generate_with_int8_weights_and_a_quant_that_needs_cuda(model_dir):
    """`--quant int8` loads dynamic int8 linear layers and greedy output stays the fp32 model's; nf4 needs CUDA."""
    import torch

    from kolm.models.quant import int8_available

    fp32 = _main(["generate", "-m", str(model_dir), "-p", "오늘은", "-n", "6", "--temperature", "0", "--no-stream"])
    assert fp32.returncode == 0, fp32.stderr[-2000:]
    if int8_available():
        int8 = _main(
            [
                "generate",
                "-m",
                str(model_dir),
                "-p",
                "오늘은",
                "-n",
                "6",
                "--temperature",
                "0",
                "--no-stream",
                "--quant",
                "int8",
            ]
        )
        assert int8.returncode == 0, int8.stderr[-2000:]
        assert int8.stdout.splitlines()[0] == fp32.stdout.splitlines()[0]  # the tiny model's greedy text survives int8
    if not torch.cuda.is_available():
        res = _main(["generate", "-m", str(model_dir), "-p", "x", "--quant", "nf4"])
        assert res.returncode == 2 and res.stderr.startswith("kolm: error:") and "CUDA" in res.stderr


def test_generate_with_int8_weight_only_layers(model_dir):
    """`--quant int8-wo --dtype bf16`: int8 weights, bf16 activations; the greedy text of the decisive tiny model holds."""
    from kolm.models.int8_weights import int8_weights_available

    if not int8_weights_available():
        return
    runner = CliRunner()
    base = ["generate", "-m", str(model_dir), "-p", "오늘은", "-n", "6", "--temperature", "0", "--no-stream"]
    fp32 = runner.invoke(build_app(), base)
    int8 = runner.invoke(build_app(), [*base, "--quant", "int8-wo"])
    assert fp32.exit_code == 0 and int8.exit_code == 0, int8.output
    assert int8.output.splitlines()[0] == fp32.output.splitlines()[0]
    bf16 = runner.invoke(build_app(), [*base, "--quant", "int8-wo", "--dtype", "bf16"])
    assert bf16.exit_code == 0 and bf16.output.startswith("오늘은"), bf16.output
