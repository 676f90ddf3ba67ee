"""Importing kolm has no side effects and loads no heavy module."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "tokenizers", "datasets", "peft", "matplotlib", "numpy", "pyarrow", "kiwipiepy")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return {m for m in out.stdout.strip().split(",") if m}


def test_import_kolm_loads_nothing_heavy():
    assert _loaded_after("import kolm") == set()


def test_config_and_stage_table_load_nothing_heavy():
    assert _loaded_after("import kolm.config, kolm.stages; kolm.config.load_config('tiny')") == set()


def test_cli_startup_loads_no_torch():
    loaded = _loaded_after("import kolm.cli.main as m; m.build_app()")
    assert not {m for m in loaded if m.split(".")[0] in {"torch", "transformers", "datasets", "peft"}}


def test_import_kolm_models_registers_with_auto_classes():
    code = (
        "import kolm.models; from transformers import AutoConfig, AutoModelForCausalLM; "
        "from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as N; "
        "c = AutoConfig.for_model('kolm_gpt'); print(type(c).__name__, type(AutoModelForCausalLM.from_config(c)).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["KolmGPTConfig", "KolmGPTForCausalLM"]
