"""Bad input to export, quantize and push: one-line errors naming the fix, and nothing overwritten."""

from __future__ import annotations

import shutil

import pytest

from kolm.errors import KolmError
from kolm.export import export_model


def test_a_quant_type_the_format_does_not_take_names_the_ones_it_does(model_dir, tmp_path):
    with pytest.raises(
        KolmError, match=r"quant 'q3_k' does not apply to gguf export of gpt models; gguf takes q8_0, f32"
    ):
        export_model(model_dir, "gguf", tmp_path / "g", quant="q3_k")
    with pytest.raises(
        KolmError, match=r"quant 'q4_0' does not apply to onnx export .* gguf \(q8_0, f32, f16, bf16, q4_0\)"
    ):
        export_model(model_dir, "onnx", tmp_path / "o", quant="q4_0")
    with pytest.raises(
        KolmError, match="--dtype bf16 does not apply to gguf export; its --quant sets the storage type"
    ):
        export_model(model_dir, "gguf", tmp_path / "g", dtype="bf16")
    assert not (tmp_path / "g").exists() and not (tmp_path / "o").exists()


def test_a_model_without_a_tokenizer_is_refused_before_any_work(model_dir, tmp_path):
    from kolm.errors import CheckpointError

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(model_dir / name, bare / name)
    with pytest.raises(CheckpointError, match="no tokenizer in .*bare: an export must carry one"):
        export_model(bare, "gguf", tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_an_existing_target_is_kept_unless_forced_and_replaced_only_on_success(model_dir, tmp_path, monkeypatch):
    target = tmp_path / "gguf"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(KolmError, match="already exists; pass --force to replace it"):
        export_model(model_dir, "gguf", target, quant="q8_0")
    assert (target / "mine.txt").read_text() == "keep me"

    import kolm.export.gguf

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(kolm.export.gguf, "export_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model_dir, "gguf", target, force=True)
    assert (target / "mine.txt").read_text() == "keep me"  # a failed forced export leaves the old folder
    assert not (tmp_path / "gguf.partial").exists()
    monkeypatch.undo()
    export_model(model_dir, "gguf", target, force=True)
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "model-Q8_0.gguf"]


def test_gguf_needs_a_byte_level_bpe_tokenizer(model_dir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    other = tmp_path / "unigram"
    shutil.copytree(model_dir, other)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(["오늘은 날씨가 맑다"] * 5, trainers.UnigramTrainer(vocab_size=40, special_tokens=["<s>"]))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (other / name).unlink(missing_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>").save_pretrained(other)
    with pytest.raises(KolmError, match="GGUF export needs a byte-level BPE tokenizer .* this model's is Unigram"):
        export_model(other, "gguf", tmp_path / "g")


def test_cli_errors_are_one_line_with_exit_code_2(model_dir, tmp_path, capsys):
    from kolm.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(model_dir), "--format", "gguf", "--quant", "q2_k", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kolm: error: quant 'q2_k' does not apply to gguf export") and err.count("\n") == 2


def test_loader_quant_options_are_checked_against_the_device(model_dir):
    from kolm.models.loading import load_model

    with pytest.raises(KolmError, match="quant nf4 loads weights with bitsandbytes, which needs a CUDA GPU"):
        load_model(model_dir, quant="nf4")
    with pytest.raises(KolmError, match="quant llm-int8 loads weights with bitsandbytes"):
        load_model(model_dir, quant="llm-int8", device="cpu")
    with pytest.raises(KolmError, match="unknown quant 'int4'; choose one of int8, int8-wo, bf16, nf4, llm-int8"):
        load_model(model_dir, quant="int4")
