"""The eval stage end to end on a hand-made run directory (tiny models, local judge server)."""

import json
import shutil

import pytest

from kolm.config import load_config
from kolm.errors import CheckpointError, ConfigError, DataError, KolmError
from kolm.run import run_stage

VALIDATION = ["오늘 서울 날씨 맑다 .", "영화 정말 좋다 , 배우 연기 최고 .", "이야기 너무 재미 없다 ."]
REVIEWS = [
    {"text": "영화 정말 좋다", "label": 1},
    {"text": "배우 연기 싫다", "label": 0},
    {"text": "이야기 최고 좋다", "label": 1},
    {"text": "재미 없다 싫다", "label": 0},
]
PROMPTS = [
    {"id": "p1", "category": "qa", "prompt": "한국 의 수도 는 ?", "reference": "한국 의 수도 는 서울 입니다 ."},
    {"id": "p2", "category": "qa", "prompt": "오늘 날씨 는 ?", "reference": "오늘 날씨 맑다 ."},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture()
def run(tmp_path, tiny_model_dir, tiny_tokenizer, make_llama):
    """A run dir with pretrain/final, data/validation and finetune/{classify,sft}; returns (dir, overrides)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import LlamaForSequenceClassification

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "pretrain" / "final")
    (run_dir / "data" / "validation").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": [str(i) for i in range(3)], "text": VALIDATION, "source": ["t"] * 3}),
        run_dir / "data" / "validation" / "part-00000.parquet",
    )
    lm = make_llama(len(tiny_tokenizer))
    clf = LlamaForSequenceClassification(lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 2}))
    cdir = run_dir / "finetune" / "classify" / "model"
    clf.save_pretrained(cdir)
    tiny_tokenizer.save_pretrained(cdir)
    (cdir / "kolm_task.json").write_text(json.dumps({"task": "classify", "labels": ["부정", "긍정"]}), encoding="utf-8")
    sdir = run_dir / "finetune" / "sft" / "model"
    make_llama(len(tiny_tokenizer), seed=1).save_pretrained(sdir)
    tiny_tokenizer.save_pretrained(sdir)
    overrides = [
        "device=cpu",
        "eval.fewshot_k=[0,2]",
        "eval.max_new_tokens=6",
        "eval.variation_prompts=2",
        f"eval.fewshot_file={_jsonl(tmp_path / 'test.jsonl', REVIEWS)}",
        f"eval.fewshot_pool={_jsonl(tmp_path / 'train.jsonl', REVIEWS)}",
        f"eval.prompts_file={_jsonl(tmp_path / 'prompts.jsonl', PROMPTS)}",
        f"eval.classify_file={_jsonl(tmp_path / 'labelled.jsonl', REVIEWS)}",
        f"eval.fewshot_models=[{tiny_model_dir}]",
    ]
    return run_dir, overrides


def test_stage_writes_every_artifact(run, judge_server, monkeypatch):
    run_dir, overrides = run
    monkeypatch.setenv("KOLM_TEST_JUDGE_KEY", "sk-test")
    cfg = load_config(
        None,
        overrides + [f"eval.judge.base_url={judge_server}", "eval.judge.api_key_env=KOLM_TEST_JUDGE_KEY"],
        run_dir=run_dir,
    )
    result = run_stage(cfg, "eval")
    out = run_dir / "eval"
    for name in ("eval.json", "eval.md", "summary.md", "samples.jsonl", "fewshot.png", "manifest.json"):
        assert (out / name).exists(), name
    res = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert res["lm"]["docs"] == 3 and res["lm"]["perplexity"] > 1
    assert [r["k"] for r in res["fewshot"]["models"][0]["results"]] == [0, 2]
    assert len(res["fewshot"]["models"]) == 2
    assert set(res["generation"]) == {"pretrain/final", "sft"}
    assert set(res["variations"]) == {"pretrain/final", "sft"}
    assert set(res["variations"]["sft"][0]["outputs"]) == {"plain", "step_by_step", "persona"}
    assert res["judge"]["systems"] == ["sft", "pretrain/final"]
    assert res["finetuned"]["classify"]["n"] == 4 and res["finetuned"]["classify"]["labels"] == ["부정", "긍정"]
    assert res["judge"]["mode"] == "pairwise" and res["judge"]["aggregate"]["n"] == 2
    assert "lm.bpc" in result.metrics and "classify.macro_f1" in result.metrics
    summary = (out / "summary.md").read_text(encoding="utf-8")
    for heading in (
        "Language modelling",
        "Few-shot",
        "Generation metrics",
        "Prompt variations",
        "Fine-tuned classifier",
        "LLM-as-judge",
    ):
        assert heading in summary
    kinds = {json.loads(line)["kind"] for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()}
    assert kinds == {"fewshot", "generation", "variation", "safety"}
    safety = res["safety"]["models"]["sft"]  # the SFT model answered every probe; answers are in samples.jsonl
    assert safety["n_risky"] == 10 and safety["n_benign"] == 10
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    items = [r for r in rows if r["kind"] == "safety" and r["model"] == "sft"]
    risky = [r["refusal"] for r in items if r["probe_kind"] == "risky"]
    assert len(items) == 20 and safety["markers"]["refusal_rate_risky"] == sum(risky) / 10


def test_eval_model_override_without_a_run(tmp_path, tiny_model_dir):
    # evaluate any model dir: no data stage, no finetune: LM part is skipped with a note
    cfg = load_config(
        None,
        ["device=cpu", f"eval.model={tiny_model_dir}", "eval.fewshot=false", "eval.generation=false"],
        run_dir=tmp_path / "r",
    )
    run_stage(cfg, "eval")
    res = json.loads((tmp_path / "r" / "eval" / "eval.json").read_text(encoding="utf-8"))
    assert "lm" not in res and any("validation split" in n for n in res["notes"])


def test_bad_inputs_give_clear_errors(run, tmp_path):
    run_dir, overrides = run
    base = overrides + ["eval.generation=false", "eval.finetuned=false", "eval.fewshot=false"]
    # empty validation split
    (run_dir / "data" / "validation" / "part-00000.parquet").unlink()
    with pytest.raises(DataError, match="validation split .* is empty"):
        run_stage(load_config(None, base, run_dir=run_dir), "eval", force=True)
    # a text column missing
    bad = _jsonl(tmp_path / "notext.jsonl", [{"document": "좋다"}])
    with pytest.raises(DataError, match="column 'text' not found"):
        run_stage(load_config(None, base + [f"eval.lm_file={bad}"], run_dir=run_dir), "eval", force=True)
    # labels outside the declared set
    odd = _jsonl(tmp_path / "odd.jsonl", REVIEWS + [{"text": "그저 그렇다", "label": "중립"}])
    fs = [o for o in overrides if not o.startswith("eval.fewshot_file")] + [
        "eval.generation=false",
        "eval.finetuned=false",
        "eval.lm=false",
    ]
    with pytest.raises(DataError, match="outside the declared set"):
        run_stage(load_config(None, fs + [f"eval.fewshot_file={odd}"], run_dir=run_dir), "eval", force=True)
    # no model
    with pytest.raises(CheckpointError, match="eval.model"):
        run_stage(load_config(None, base + [f"eval.model={tmp_path / 'nothing'}"], run_dir=run_dir), "eval", force=True)


def test_judge_key_missing_fails_before_model_work(run, monkeypatch):
    run_dir, overrides = run
    monkeypatch.delenv("KOLM_NO_SUCH_KEY", raising=False)
    cfg = load_config(
        None,
        overrides + ["eval.judge.base_url=http://127.0.0.1:9/v1", "eval.judge.api_key_env=KOLM_NO_SUCH_KEY"],
        run_dir=run_dir,
    )
    with pytest.raises(ConfigError, match="KOLM_NO_SUCH_KEY is not set"):
        run_stage(cfg, "eval")
    assert not (run_dir / "eval" / "eval.json").exists()


def test_core_function_without_a_run(tmp_path, tiny_model_dir):
    # the typed core takes its own section plus explicit paths; nothing of a run is needed
    from kolm.evaluate.config import EvalConfig
    from kolm.evaluate.stage import evaluate
    from kolm.infer.generate import SamplingParams, generate

    prompts = _jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    lm_file = tmp_path / "held.txt"
    lm_file.write_text("\n".join(VALIDATION), encoding="utf-8")
    cfg = EvalConfig(fewshot=False, lm_file=str(lm_file), prompts_file=prompts, max_new_tokens=5, variation_prompts=1)
    res = evaluate(cfg, model=tiny_model_dir, out=tmp_path / "eval", seed=3)
    assert res.results["lm"]["docs"] == 3 and set(res.files) == {"eval", "report", "summary", "samples"}
    assert set(res.inputs) == {tiny_model_dir, lm_file, tmp_path / "prompts.jsonl"}
    assert res.metrics["lm.bpc"] == round(res.results["lm"]["bpc"], 5)
    # greedy outputs are those of the generation entry point, prompt by prompt
    from kolm.models.loading import load_model

    model, tok = load_model(tiny_model_dir)
    samples = [json.loads(x) for x in (tmp_path / "eval" / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    outputs = [s["output"] for s in samples if s["kind"] == "generation"]
    expected = [
        generate(model, tok, [p["prompt"]], SamplingParams(max_new_tokens=5, temperature=0), fit_context=True)[
            0
        ].text.strip()
        for p in PROMPTS
    ]
    assert outputs == expected


def test_eval_quant_int8_loads_the_model_quantized(tmp_path, tiny_model_dir):
    """`eval.quant=int8` scores the int8 model (dynamic linear layers): recorded in eval.json, its bits per
    character close to the fp32 model's on the same text, and a CUDA-only quant on the CPU is a one-line error."""
    from kolm.evaluate.config import EvalConfig
    from kolm.evaluate.stage import evaluate
    from kolm.models.quant import int8_available

    if not int8_available():
        pytest.skip("this torch has no CPU int8 dynamic quantization")
    lm_file = tmp_path / "held.txt"
    lm_file.write_text("\n".join(VALIDATION), encoding="utf-8")
    common = dict(fewshot=False, generation=False, lm_file=str(lm_file))
    fp32 = evaluate(EvalConfig(**common), model=tiny_model_dir, out=tmp_path / "fp32").results
    int8 = evaluate(EvalConfig(**common, quant="int8"), model=tiny_model_dir, out=tmp_path / "int8").results
    assert fp32["quant"] is None and int8["quant"] == "int8"
    assert json.loads((tmp_path / "int8" / "eval.json").read_text(encoding="utf-8"))["quant"] == "int8"
    assert int8["lm"]["bpc"] != fp32["lm"]["bpc"]  # the quantized weights really were used
    assert int8["lm"]["bpc"] == pytest.approx(fp32["lm"]["bpc"], rel=0.05)
    with pytest.raises(KolmError, match="needs a CUDA GPU"):
        evaluate(EvalConfig(**common, quant="nf4"), model=tiny_model_dir, out=tmp_path / "nf4")
    with pytest.raises(ConfigError, match="quant: .int3. is not allowed"):
        EvalConfig(quant="int3")


def test_kolm_eval_quant_option_is_the_config_key(capsys):
    from kolm.cli.main import main, shortcut_overrides
    from kolm.evaluate.config import QUANT_CHOICES
    from kolm.models.quant import QUANTS

    assert set(QUANT_CHOICES) == set(QUANTS)  # the config's light copy of the loader's choices

    assert shortcut_overrides("eval", {"quant": "int8"}) == ["eval.quant=int8"]
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--quant" in capsys.readouterr().out
