"""The `eval` stage: measure the run's models and write eval.json, eval.md, summary.md.

What it measures (each part can be switched off in `eval:`):
1. language modelling: perplexity / bits per character on the data stage's
   validation split (or `eval.lm_file`);
2. few-shot sentiment: zero/one/k-shot accuracy from label-word likelihoods,
   raw and calibrated, for the main model and `eval.fewshot_models`;
3. generation: BLEU/chrF/ROUGE against the references of eval_prompts.jsonl
   (greedy), and the same prompts under several templates, sampled side by side;
4. fine-tuned models in `finetune/<task>/`: classifier accuracy/macro-F1/confusion,
   SFT generation metrics;
5. LLM-as-judge when `eval.judge.base_url` is set;
6. safety probes: the SFT and aligned models answer risky and benign Korean
   requests (`kolm.evaluate.safety`);
7. KLUE: fine-tuned `finetune/klue-*` models on their dev sets, in the KLUE
   paper's table (`kolm.evaluate.klue_suite`); `eval.suite=klue` does only this.

`evaluate(cfg, model=..., out=...)` is the typed core for the Python API;
`run(ctx)` feeds it this run's folders. `eval.model` evaluates any model dir
instead of the run's pretrain/final, so `kolm eval eval.model=path/to/model`
works without a run. Models are loaded by `kolm.models.loading.load_model`
and generate through `kolm.infer.generate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kolm.context import StageContext, StageResult
from kolm.data.klue import KLUE_TASKS, KlueDataConfig
from kolm.data.tasks import TaskDataConfig, assets_dir
from kolm.errors import CheckpointError, DataError
from kolm.evaluate import tables
from kolm.evaluate.config import EvalConfig
from kolm.files import append_jsonl, write_json
from kolm.progress import Progress
from kolm.runtime import resolve_device, seed_everything

__all__ = ["EvalResult", "evaluate", "run", "main_model_dir"]


@dataclass
class EvalResult:
    """What `evaluate` measured and wrote."""

    results: dict[str, Any]  # the content of eval.json
    metrics: dict[str, Any]  # flat headline numbers
    files: dict[str, Path]  # eval, report, summary (and samples) in `out`
    inputs: list[Path] = field(default_factory=list)  # every file and model dir it read


def main_model_dir(cfg: EvalConfig, pretrain_dir: Path) -> Path:
    """eval.model, else the run's pretrain/final."""
    return Path(cfg.model) if cfg.model else pretrain_dir / "final"


def _name(path: Path, run_dir: Path | None) -> str:
    """A short display name of a model dir: run-relative inside the run, else its last two parts."""
    if run_dir is not None:
        try:
            return str(path.resolve().relative_to(run_dir.resolve()))
        except ValueError:
            pass
    return "/".join(path.parts[-2:]) or str(path)


def _parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _load(cfg: EvalConfig, path: Path, device: str, task: str = "causal-lm") -> tuple[Any, Any]:
    from kolm.models.loading import load_model

    return load_model(path, task=task, device=device, quant=cfg.quant)


# ----------------------------------------------------------------------------
# Parts


def _lm(
    cfg: EvalConfig,
    model: Any,
    tok: Any,
    device: str,
    data_dir: Path | None,
    progress: Progress,
    inputs: list[Path],
    notes: list[str],
) -> dict[str, Any] | None:
    from kolm.data.tasks import read_split_texts, read_texts
    from kolm.evaluate.perplexity import perplexity

    if cfg.lm_file:
        texts, source = read_texts(cfg.lm_file, cfg.text_field), cfg.lm_file
        inputs.append(Path(cfg.lm_file))
        if not texts:
            raise DataError(f"eval.lm_file {cfg.lm_file} holds no text in column {cfg.text_field!r}")
    else:
        if data_dir is None or not (data_dir / "validation").exists():
            where = data_dir / "validation" if data_dir is not None else "the data stage"
            notes.append(
                f"language modelling skipped: no validation split at {where} (run `kolm data` or set eval.lm_file)"
            )
            return None
        inputs.append(data_dir / "validation")
        texts, source = read_split_texts(data_dir, "validation", cfg.text_field), "data/validation"
    n = min(len(texts), cfg.lm_max_docs) if cfg.lm_max_docs else len(texts)
    with progress.task("eval: perplexity", total=n) as bar:
        out = perplexity(model, tok, texts, cfg.max_length, cfg.stride, device, cfg.lm_max_docs, bar)
    return {"source": source, **out}


def _labelled(
    cfg: EvalConfig, path: str | None, default: str, labels: list[str], inputs: list[Path]
) -> list[tuple[str, str]] | None:
    from kolm.data.tasks import read_labelled

    p = Path(path) if path else assets_dir() / default
    if not p.exists() and not path:
        return None
    pairs, _ = read_labelled(p, labels, cfg.labelled_text_field, cfg.label_field)
    inputs.append(p)
    return pairs


def _fewshot(
    cfg: EvalConfig,
    model: Any,
    tok: Any,
    name: str,
    seed: int,
    device: str,
    run_dir: Path | None,
    progress: Progress,
    inputs: list[Path],
    notes: list[str],
) -> dict[str, Any] | None:
    from kolm.evaluate.fewshot import evaluate_fewshot
    from kolm.evaluate.perplexity import context_length
    from kolm.evaluate.prompts import load_fewshot_template

    template = load_fewshot_template(cfg.fewshot_template)
    examples = _labelled(cfg, cfg.fewshot_file, "reviews_test.jsonl", template.labels, inputs)
    pool = _labelled(cfg, cfg.fewshot_pool, "reviews_train.jsonl", template.labels, inputs) or []
    if examples is None:
        notes.append("few-shot skipped: embedded reviews_test.jsonl not found (set eval.fewshot_file)")
        return None
    if cfg.fewshot_max_examples and len(examples) > cfg.fewshot_max_examples:
        # a seeded random subset (file order may group labels), kept in file order
        import random

        keep = sorted(random.Random(seed).sample(range(len(examples)), cfg.fewshot_max_examples))
        examples = [examples[i] for i in keep]
    if not examples:
        raise DataError("few-shot: no labelled examples to classify; check eval.fewshot_file")
    if max(cfg.fewshot_k) > 0 and not pool:
        raise DataError("few-shot: k > 0 needs demonstrations; set eval.fewshot_pool to a labelled jsonl")
    models = [(name, None)] + [(_name(Path(p), run_dir), Path(p)) for p in cfg.fewshot_models]
    out: dict[str, Any] = {"template": template.name, "verbalizers": template.verbalizers, "models": []}
    samples: list[dict[str, Any]] = []
    for mname, mpath in models:
        m, t = (model, tok) if mpath is None else _load(cfg, mpath, device)
        if mpath is not None:
            inputs.append(mpath)
        rows = []
        with progress.task(f"eval: few-shot {mname}", total=len(examples) * len(cfg.fewshot_k)) as bar:
            for k in cfg.fewshot_k:
                r = evaluate_fewshot(
                    m, t, template, examples, pool, k, seed, cfg.calibrate, device, context_length(m), bar
                )
                row = {
                    "k": k,
                    "n": r["raw"]["n"],
                    "accuracy": r["raw"]["accuracy"],
                    "macro_f1": r["raw"]["macro_f1"],
                    "confusion_matrix": r["raw"]["confusion_matrix"],
                    "shots": r["shots"],
                }
                if "calibrated" in r:
                    row.update(
                        calibrated_accuracy=r["calibrated"]["accuracy"],
                        calibrated_macro_f1=r["calibrated"]["macro_f1"],
                        prior=r["prior"],
                    )
                rows.append(row)
                samples += [{"kind": "fewshot", "model": mname, "k": k, **p} for p in r["predictions"]]
        out["models"].append({"name": mname, "params": _parameters(m), "results": rows})
        if mpath is not None:
            del m
    out["_samples"] = samples
    return out


def _prompts(cfg: EvalConfig, inputs: list[Path], notes: list[str]) -> list[dict[str, str]] | None:
    from kolm.data.tasks import read_prompts

    p = Path(cfg.prompts_file) if cfg.prompts_file else assets_dir() / "eval_prompts.jsonl"
    if not p.exists() and not cfg.prompts_file:
        notes.append("generation skipped: embedded eval_prompts.jsonl not found (set eval.prompts_file)")
        return None
    prompts = read_prompts(p)
    inputs.append(p)
    return prompts[: cfg.max_prompts] if cfg.max_prompts else prompts


def _complete(model: Any, tok: Any, prompt: str, chat: bool, params: Any) -> str:
    """One prompt's completion, stripped. One prompt per call: no padding, so greedy text is exactly the model's."""
    from kolm.infer.generate import generate, render_prompt

    done = generate(model, tok, [render_prompt(tok, prompt, chat)], params, add_bos=not chat, fit_context=True)
    return done[0].text.strip()


def _generate_all(
    cfg: EvalConfig, model: Any, tok: Any, prompts: list[dict[str, str]], label: str, chat: bool, progress: Progress
) -> list[str]:
    """Greedy completions of every prompt (what the generation metrics score)."""
    from kolm.infer.generate import SamplingParams

    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    outs = []
    with progress.task(f"eval: generate ({label})", total=len(prompts)) as bar:
        for p in prompts:
            outs.append(_complete(model, tok, p["prompt"], chat, params))
            bar.advance(1)
    return outs


def _metrics_for(cfg: EvalConfig, prompts: list[dict[str, str]], outputs: list[str]) -> dict[str, Any] | None:
    from kolm.metrics.text import generation_metrics

    pairs = [(o, p["reference"]) for o, p in zip(outputs, prompts) if p["reference"]]
    if not pairs:
        return None
    return generation_metrics([o for o, _ in pairs], [r for _, r in pairs], cfg.bleu_tokenize, cfg.rouge_tokenizer)


def _variations(
    cfg: EvalConfig,
    model: Any,
    tok: Any,
    prompts: list[dict[str, str]],
    seed: int,
    label: str,
    chat: bool,
    progress: Progress,
) -> list[dict[str, Any]]:
    """The first prompts under every variation, sampled with the same seed (differences come from the prompt)."""
    from kolm.evaluate.prompts import load_variations
    from kolm.infer.generate import SamplingParams

    variants = load_variations("variations", cfg.variants)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=seed)
    rows = []
    chosen = prompts[: cfg.variation_prompts]
    with progress.task(f"eval: prompt variations ({label})", total=len(chosen) * len(variants)) as bar:
        for p in chosen:
            outputs = {}
            for v in variants:
                outputs[v.name] = _complete(model, tok, v.render(p["prompt"]), chat, params)
                bar.advance(1)
            rows.append({"id": p["id"], "prompt": p["prompt"], "outputs": outputs})
    return rows


def _classify(
    cfg: EvalConfig,
    task_dir: Path,
    device: str,
    seed: int,
    classify_data: TaskDataConfig | None,
    seq_len: int,
    inputs: list[Path],
) -> dict[str, Any]:
    from kolm.data.tasks import load_classification, read_labelled
    from kolm.evaluate.classifier import classifier_labels, predict_labels
    from kolm.metrics.classification import classification_report

    inputs.append(task_dir)
    model, tok = _load(cfg, task_dir, device, task="classify")
    labels = classifier_labels(model, task_dir)
    if cfg.classify_file:
        pairs, labels = read_labelled(cfg.classify_file, cfg.labels or labels, cfg.labelled_text_field, cfg.label_field)
        inputs.append(Path(cfg.classify_file))
        source = cfg.classify_file
    else:
        if classify_data is None:
            raise DataError("no labelled examples to evaluate the classifier on; set eval.classify_file")
        data = load_classification(classify_data, seed=seed)
        split = data.test or data.validation
        if [str(x) for x in data.labels] != labels:
            raise DataError(
                f"the classifier's labels {labels} differ from the data's {data.labels}; re-run `kolm finetune`"
            )
        pairs = [(t, labels[i]) for t, i in split]
        source = f"finetune.classify ({classify_data.kind}, {'test' if data.test else 'validation'})"
    if not pairs:
        raise DataError("no labelled examples to evaluate the classifier on; set eval.classify_file")
    preds = predict_labels(model, tok, [t for t, _ in pairs], seq_len)
    return {"source": source, **classification_report([lab for _, lab in pairs], preds, labels)}


def _judge(
    cfg: EvalConfig, prompts: list[dict[str, str]], systems: dict[str, list[str]], progress: Progress
) -> dict[str, Any]:
    from kolm.evaluate.judge import JudgeClient, aggregate_pairwise, aggregate_rubric, judge_pair, judge_rubric

    jc = cfg.judge
    client = JudgeClient(jc.base_url, jc.model, jc.api_key_env, jc.timeout)
    items = prompts[: jc.max_items]
    out: dict[str, Any] = {"base_url": jc.base_url, "model": jc.model, "mode": jc.mode, "swap": jc.swap}
    names = list(systems)
    if jc.mode == "pairwise" and len(names) >= 2:
        a, b = names[:2]
        with progress.task(f"eval: judge {a} vs {b}", total=len(items)) as bar:
            results = []
            for i, p in enumerate(items):
                results.append(
                    {"id": p["id"], **judge_pair(client, p["prompt"], systems[a][i], systems[b][i], jc.swap)}
                )
                bar.advance(1)
        out.update(systems=[a, b], results=results, aggregate=aggregate_pairwise(results, (a, b)))
        return out
    out["mode"] = "rubric"
    agg, results = {}, []
    with progress.task("eval: judge rubric", total=len(items) * len(names)) as bar:
        for name in names:
            rs = []
            for i, p in enumerate(items):
                rs.append(
                    {
                        "system": name,
                        "id": p["id"],
                        **judge_rubric(client, p["prompt"], systems[name][i], p["reference"] or None),
                    }
                )
                bar.advance(1)
            agg[name] = aggregate_rubric(rs)
            results += rs
    out.update(systems=names, results=results, aggregate=agg)
    return out


def _safety(
    cfg: EvalConfig,
    ft_dir: Path | None,
    align_dir: Path | None,
    device: str,
    progress: Progress,
    inputs: list[Path],
    notes: list[str],
) -> dict[str, Any] | None:
    """Answers of the SFT and aligned models to the safety probes, scored by markers, reward model and judge."""
    from kolm.data.tasks import read_safety_probes
    from kolm.evaluate.safety import score_answers
    from kolm.infer.generate import SamplingParams

    models: dict[str, Path] = {}
    if ft_dir is not None and (ft_dir / "sft").exists():
        models["sft"] = ft_dir / "sft"
    for method in ("dpo", "ppo", "grpo"):
        for sub in ("adapter", "model"):
            if align_dir is not None and (align_dir / method / sub).exists():
                models[f"align/{method}"] = align_dir / method / sub
    if not models:
        notes.append("safety probes skipped: no SFT or aligned model (run `kolm finetune` or `kolm align`)")
        return None
    path = Path(cfg.safety_file) if cfg.safety_file else assets_dir() / "safety_probes.jsonl"
    probes = read_safety_probes(path)
    inputs.append(path)
    reward_dir = Path(cfg.safety_reward) if cfg.safety_reward else None
    if reward_dir is None and align_dir is not None:
        reward_dir = next(
            (align_dir / "reward" / s for s in ("model", "adapter") if (align_dir / "reward" / s).exists()), None
        )
    reward_texts = None
    if reward_dir is not None:
        from kolm.align.reward import render_answer
        from kolm.align.scoring import ModelReward

        inputs.append(reward_dir)
        rm = ModelReward(reward_dir, device)

        def reward_texts(prompt: str, answers: list[str]) -> list[float]:
            return rm.texts_scores([render_answer(rm.tokenizer, prompt, a) for a in answers])

    else:
        notes.append("safety: no reward model (run `kolm align align.method=reward` or set eval.safety_reward)")
    judge = None
    if cfg.judge.base_url:
        from kolm.evaluate.judge import JudgeClient, judge_rubric

        jc = cfg.judge
        client = JudgeClient(jc.base_url, jc.model, jc.api_key_env, jc.timeout)

        def judge(prompt: str, answer: str, reference: str) -> int | None:
            return judge_rubric(client, prompt, answer, reference)["score"]

    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    out: dict[str, Any] = {"source": str(path), "reward_model": str(reward_dir) if reward_dir else None, "models": {}}
    for name, mdir in models.items():
        inputs.append(mdir)
        model, tok = _load(cfg, mdir, device)
        with progress.task(f"eval: safety probes ({name})", total=len(probes)) as bar:
            answers = []
            for p in probes:
                answers.append(_complete(model, tok, p["prompt"], True, params))
                bar.advance(1)
        out["models"][name] = score_answers(probes, answers, reward_texts, judge)
        del model
    return out


# ----------------------------------------------------------------------------
# The core and the stage


def evaluate(
    cfg: EvalConfig,
    *,
    model: str | Path,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    finetune_dir: str | Path | None = None,
    classify_data: TaskDataConfig | None = None,
    classify_seq_len: int = 128,
    run_dir: str | Path | None = None,
    align_dir: str | Path | None = None,
    klue_data: KlueDataConfig | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate the model at `model` (and any fine-tuned models) per `cfg`; write eval.json, eval.md, summary.md to `out`.

    `device` is a resolved device name. `data_dir` is the data stage folder
    (its validation split is the language-modelling text unless
    `cfg.lm_file`); `finetune_dir` the finetune stage folder (`classify/`,
    `sft/`); `classify_data` and `classify_seq_len` are `finetune.classify`
    and `finetune.seq_len`, the default data of the classifier and the token
    budget it was trained with. Models inside `run_dir` get run-relative names.
    `align_dir` is the align stage folder: its aligned models answer the
    safety probes beside the SFT model, judged by its reward model.
    `klue_data` is `finetune.klue`: the KLUE files whose dev sets score the
    fine-tuned KLUE models. With `cfg.suite == "klue"` only the KLUE table is
    made, for the fine-tuned models under `model` (`klue_suite.find_task_models`).
    """
    from kolm.evaluate.judge import JudgeClient

    progress = progress or Progress(enabled=False)
    model_dir, out = Path(model), Path(out)
    data_dir = Path(data_dir) if data_dir is not None else None
    run_dir = Path(run_dir) if run_dir is not None else None
    seed_everything(seed)
    if cfg.suite == "klue":
        from kolm.evaluate.klue_suite import suite_only

        res, files, used = suite_only(cfg, model_dir, out, device, klue_data, progress)
        return EvalResult(results=res, metrics=tables.headline(res), files=files, inputs=[model_dir, *used])
    if cfg.judge.base_url:  # a missing key fails before any model work
        jc = cfg.judge
        JudgeClient(jc.base_url, jc.model, jc.api_key_env, jc.timeout).check()
    try:
        lm, tok = _load(cfg, model_dir, device)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc} (the model to evaluate: set eval.model=<model dir> or run `kolm pretrain`)"
        ) from None
    inputs: list[Path] = [model_dir]
    name = _name(model_dir, run_dir)
    res: dict[str, Any] = {"model": str(model_dir), "params": _parameters(lm), "device": device, "quant": cfg.quant}
    notes: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    samples_path.unlink(missing_ok=True)

    if cfg.lm and (lm_res := _lm(cfg, lm, tok, device, data_dir, progress, inputs, notes)):
        res["lm"] = lm_res
        progress.log(
            f"eval: perplexity {lm_res['perplexity']:.2f}, {lm_res['bpc']:.3f} bits/char on {lm_res['source']}"
        )
    if cfg.fewshot and (fs := _fewshot(cfg, lm, tok, name, seed, device, run_dir, progress, inputs, notes)):
        for s in fs.pop("_samples"):
            append_jsonl(samples_path, s)
        res["fewshot"] = fs

    prompts = _prompts(cfg, inputs, notes) if (cfg.generation or cfg.judge.base_url) else None
    systems: dict[str, list[str]] = {}
    if prompts:
        systems[name] = _generate_all(cfg, lm, tok, prompts, name, False, progress)
        if cfg.generation:
            res["generation"] = {}
            if m := _metrics_for(cfg, prompts, systems[name]):
                res["generation"][name] = m
            res["variations"] = {name: _variations(cfg, lm, tok, prompts, seed, name, False, progress)}
            res["variants"] = list(cfg.variants)

    ft_dir = Path(finetune_dir) if finetune_dir is not None else None
    if cfg.finetuned and ft_dir is not None and ft_dir.exists():
        res["finetuned"] = {}
        if (ft_dir / "classify").exists():
            res["finetuned"]["classify"] = _classify(
                cfg, ft_dir / "classify", device, seed, classify_data, classify_seq_len, inputs
            )
        if (ft_dir / "sft").exists() and prompts:
            inputs.append(ft_dir / "sft")
            sft, sft_tok = _load(cfg, ft_dir / "sft", device)
            systems["sft"] = _generate_all(cfg, sft, sft_tok, prompts, "sft", True, progress)
            if cfg.generation:
                if m := _metrics_for(cfg, prompts, systems["sft"]):
                    res["generation"]["sft"] = m
                res["variations"]["sft"] = _variations(cfg, sft, sft_tok, prompts, seed, "sft", True, progress)
        if any((ft_dir / t).exists() for t in KLUE_TASKS):
            from kolm.evaluate.klue_suite import suite_for

            res["klue"] = suite_for(cfg, ft_dir, device, klue_data, progress)
            inputs += [Path(r["model"]) for r in res["klue"]["rows"] if r.get("model")]
    for sys_name, outs in systems.items():
        for p, o in zip(prompts or [], outs):
            append_jsonl(
                samples_path,
                {
                    "kind": "generation",
                    "model": sys_name,
                    "id": p["id"],
                    "prompt": p["prompt"],
                    "output": o,
                    "reference": p["reference"],
                },
            )
    for sys_name, rows in res.get("variations", {}).items():
        for row in rows:
            for v, o in row["outputs"].items():
                append_jsonl(
                    samples_path,
                    {
                        "kind": "variation",
                        "model": sys_name,
                        "id": row["id"],
                        "variant": v,
                        "prompt": row["prompt"],
                        "output": o,
                    },
                )

    if cfg.safety and (
        sf := _safety(cfg, ft_dir, Path(align_dir) if align_dir else None, device, progress, inputs, notes)
    ):
        for name, r in sf["models"].items():
            for item in r["items"]:
                append_jsonl(samples_path, {"kind": "safety", "model": name, **item})
        res["safety"] = {
            **sf,
            "models": {k: {kk: vv for kk, vv in v.items() if kk != "items"} for k, v in sf["models"].items()},
        }

    if cfg.judge.base_url and prompts:
        # the fine-tuned model first: the headline is "how often does fine-tuning win?"
        order = sorted(systems, key=lambda s: s != "sft")
        res["judge"] = _judge(cfg, prompts, {s: systems[s] for s in order}, progress)
    res["notes"] = notes
    for n in notes:
        progress.log(n)

    files = {"eval": write_json(out / "eval.json", res)}
    plot = tables.fewshot_plot(res["fewshot"], out / "fewshot.png") if "fewshot" in res else None
    (out / "summary.md").write_text(tables.markdown(res, plot, full=False), encoding="utf-8")
    (out / "eval.md").write_text(tables.markdown(res, plot, full=True), encoding="utf-8")
    files.update(report=out / "eval.md", summary=out / "summary.md")
    if samples_path.exists():
        files["samples"] = samples_path
    return EvalResult(results=res, metrics=tables.headline(res), files=files, inputs=inputs)


def run(ctx: StageContext) -> StageResult:
    """Evaluate the run's (or eval.model's) language model and any fine-tuned models."""
    cfg = ctx.cfg.eval
    if cfg.suite == "klue":
        model = Path(cfg.model) if cfg.model else ctx.run_dir
    else:
        model = main_model_dir(cfg, ctx.stage_dir("pretrain"))
    result = evaluate(
        cfg,
        model=model,
        out=ctx.out,
        seed=ctx.cfg.seed,
        device=resolve_device(cfg.device) if cfg.device else ctx.device,
        data_dir=ctx.stage_dir("data"),
        finetune_dir=ctx.stage_dir("finetune"),
        classify_data=ctx.cfg.finetune.classify,
        classify_seq_len=ctx.cfg.finetune.seq_len,
        run_dir=ctx.run_dir,
        align_dir=ctx.stage_dir("align"),
        klue_data=ctx.cfg.finetune.klue,
        progress=ctx.progress,
    )
    for path in dict.fromkeys(result.inputs):
        ctx.input(path)
    return StageResult(outputs={k: ctx.output(p) for k, p in result.files.items()}, metrics=result.metrics)
