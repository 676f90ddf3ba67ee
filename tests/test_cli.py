"""The command line: help text from the stage table, doctor, error exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kolm.cli.main import TOOLS, main
from kolm.stages import STAGES


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_help_lists_every_stage_and_tool(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for stage in STAGES:
        assert stage.name in out
        assert stage.help[:20] in out  # the one-line help comes from the table
    for tool in TOOLS:
        assert tool in out
    assert "토크나이저" in out


def test_stage_help_names_options_and_actions(capsys):
    code, out, _ = run_cli(["tokenizer", "--help"], capsys)
    assert code == 0
    for opt in ("--config", "--run-dir", "--force", "--debug"):
        assert opt in out
    assert "compare" in out


def test_doctor_table_and_json(capsys):
    code, out, _ = run_cli(["doctor"], capsys)
    assert code in (0, None)
    assert "Python" in out and "torch" in out and "bf16" in out and "kiwipiepy" in out
    code, out, _ = run_cli(["doctor", "--json"], capsys)
    data = json.loads(out)
    assert data["ok"] is True and data["cpu_cores"] >= 1
    import torch

    if torch.version.cuda:
        expected_build = f"CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):
        expected_build = f"ROCm {torch.version.hip}"
    else:
        expected_build = "CPU"
    assert data["torch"]["build"] == expected_build and data["torch"]["version"] == torch.__version__
    assert set(data["optional"]) >= {
        "bitsandbytes",
        "flash_attn",
        "mamba_ssm",
        "gradio",
        "onnxruntime",
        "kiwipiepy",
        "ray",
    }


def test_doctor_fails_when_required_package_missing(monkeypatch, capsys):
    import kolm.doctor as doctor

    monkeypatch.setattr(doctor, "REQUIRED", doctor.REQUIRED + ("surely_not_a_package_kolm",))
    code, out, _ = run_cli(["doctor", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["problems"][0].startswith("required package 'surely_not_a_package_kolm' is missing")


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "--config", "no_such_preset"], "config file not found"),
        (["data", "--config", "tiny", "pretrain.max_stepz=3"], "unknown key (did you mean 'max_steps'?)"),
        (["data", "--config", "tiny", "model.d_model=wide"], "model.d_model: expected an integer"),
        (["data", "banana"], "neither an override"),
        (["report", "/no/such/run"], "run directory not found"),
    ],
)
def test_user_errors_exit_2_with_one_message_and_no_traceback(args, message, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and err.startswith("kolm: error:")


def test_debug_shows_the_traceback(capsys):
    from kolm.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["data", "--config", "no_such_preset", "--debug"])


def test_console_script_runs_as_a_process():
    out = subprocess.run([sys.executable, "-m", "kolm.cli.main", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pipeline" in out.stdout
