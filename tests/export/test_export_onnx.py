"""`export --format onnx`: a decoder with a KV cache that onnxruntime runs like our model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="the onnx export is checked in onnxruntime (pip install kolm[quant])")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (pip install kolm[quant])")


@pytest.fixture(scope="module")
def onnx_dir(model_dir, tmp_path_factory):
    from kolm.export import export_model

    return export_model(model_dir, "onnx", tmp_path_factory.mktemp("onnx") / "onnx")


@pytest.fixture(scope="module")
def ours(model_dir):
    from kolm.models.loading import load_model

    return load_model(model_dir)


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _empty_past(config, batch):
    empty = np.zeros((batch, config.n_kv_heads, 0, config.head_dim), np.float32)
    return {f"past_key_values.{i}.{p}": empty for i in range(config.n_layers) for p in ("key", "value")}


def test_onnx_graph_has_optimums_names_and_dynamic_axes(onnx_dir, ours):
    from kolm.export.onnx import input_names, output_names

    model, _ = ours
    session = _session(onnx_dir / "model.onnx")
    n = model.config.n_layers
    assert [i.name for i in session.get_inputs()] == input_names(n)
    assert [o.name for o in session.get_outputs()] == output_names(n)
    assert input_names(n)[3:5] == ["past_key_values.0.key", "past_key_values.0.value"]
    past = session.get_inputs()[3].shape  # (batch, kv_heads, past, head_dim)
    assert isinstance(past[0], str) and isinstance(past[2], str) and past[1:4:2] == [2, 8]
    assert all(isinstance(d, str) for d in session.get_inputs()[0].shape)  # batch and sequence
    # Loadable without kolm: a Llama config and the tokenizer beside the graph, and the model card.
    assert json.loads((onnx_dir / "config.json").read_text())["model_type"] == "llama"
    assert (onnx_dir / "tokenizer.json").exists() and "language: ko" in (onnx_dir / "README.md").read_text()


def test_onnx_prefill_and_decode_steps_match_pytorch(onnx_dir, ours):
    model, _ = ours
    c = model.config
    session = _session(onnx_dir / "model.onnx")
    # Batch of 2 with left padding on row 1: the mask and positions come from the caller, as in optimum.
    ids = torch.randint(3, c.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": pos.numpy(), **_empty_past(c, 2)}
    logits, *present = session.run(None, feed)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, position_ids=pos, use_cache=True)
    real = mask.bool().numpy()
    np.testing.assert_allclose(logits[real], ref.logits.numpy()[real], atol=1e-4, rtol=0)
    cache = ref.cache
    # Four decode steps, each fed the previous presents as the past.
    for step in range(4):
        nxt = torch.from_numpy(logits[:, -1].argmax(-1))[:, None]  # (2, 1)
        mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
        pos = pos[:, -1:] + 1
        past = {f"past_key_values.{i // 2}.{'key' if i % 2 == 0 else 'value'}": t for i, t in enumerate(present)}
        feed = {"input_ids": nxt.numpy(), "attention_mask": mask.numpy(), "position_ids": pos.numpy(), **past}
        logits, *present = session.run(None, feed)
        with torch.no_grad():
            ref = model(nxt, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        cache = ref.cache
        np.testing.assert_allclose(logits, ref.logits.numpy(), atol=1e-4, rtol=0, err_msg=f"decode step {step}")
        assert present[0].shape[2] == 9 + step + 1


def test_onnx_greedy_loop_reproduces_our_tokens(onnx_dir, ours):
    from kolm.export.onnx import greedy
    from kolm.infer.generate import SamplingParams, generate

    model, tokenizer = ours
    session = _session(onnx_dir / "model.onnx")
    for prompt in ["오늘은 날씨가", "한국어 언어 모델을"]:
        ids = [tokenizer.bos_token_id] + tokenizer(prompt)["input_ids"]
        mine = generate(model, tokenizer, [ids], SamplingParams(max_new_tokens=12, temperature=0, eos_token_ids=[]))
        assert greedy(session, ids, 12) == mine[0].token_ids


def test_onnx_int8_is_smaller_and_close(model_dir, onnx_dir, ours, tmp_path, monkeypatch):
    import shutil

    import kolm.export.onnx
    from kolm.export import export_model
    from kolm.export.onnx import greedy

    # The graph is the fixture's (traced once, it takes seconds); quantization and packaging run for real.
    monkeypatch.setattr(
        kolm.export.onnx, "_export_graph", lambda model, path: shutil.copy(onnx_dir / "model.onnx", path)
    )
    q = export_model(model_dir, "onnx", tmp_path / "onnx-int8", quant="int8")
    size = lambda d: sum(p.stat().st_size for p in d.glob("model.onnx*"))  # noqa: E731
    assert size(q) < 0.8 * size(onnx_dir)  # the embedding (a Gather) stays fp32
    ops = {n.op_type for n in __import__("onnx").load(str(q / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    model, tokenizer = ours
    ids = [tokenizer.bos_token_id] + tokenizer("서울의 봄은")["input_ids"]
    full, small = greedy(_session(onnx_dir / "model.onnx"), ids, 8), greedy(_session(q / "model.onnx"), ids, 8)
    assert sum(a == b for a, b in zip(full, small)) >= 4  # int8 keeps most greedy choices of this tiny model
