"""The `eval` stage: measure the run's models and write eval.json, eval.md, summary.md.

What it measures (each part can be switched off in `eval:`):
1. language modelling: perplexity / bits per character on the data stage's
   validation split (or `eval.lm_file`);
2. few-shot sentiment: zero/one/k-shot accuracy from label-word likelihoods,
   raw and calibrated, for the main model and `eval.fewshot_models`;
3. generation: BLEU/chrF/ROUGE against the references of eval_prompts.jsonl,
   and the same prompts under several templates, sampled side by side;
4. fine-tuned models in `finetune/<task>/`: classifier accuracy/macro-F1/confusion,
   SFT generation metrics;
5. LLM-as-judge when `eval.judge.base_url` is set.

`eval.model` evaluates any HF model dir instead of the run's pretrain/final,
so `kolm eval eval.model=path/to/downloaded-model` works without a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.errors import DataError
from kolm.evaluate import tables
from kolm.evaluate.sources import assets_dir
from kolm.run import StageResult, append_jsonl, resolve_device, seed_everything, write_json

__all__ = ["run", "main_model_dir"]


def main_model_dir(ctx: Any) -> Path:
    """eval.model, else this run's pretrain/final."""
    cfg = ctx.cfg.eval
    return Path(cfg.model) if cfg.model else ctx.stage_dir("pretrain") / "final"


def _name(path: Path, ctx: Any) -> str:
    try:
        return str(path.resolve().relative_to(ctx.run_dir.resolve()))
    except ValueError:
        return "/".join(path.parts[-2:]) or str(path)


# ----------------------------------------------------------------------------
# Parts


def _lm(ctx: Any, model: Any, tok: Any, device: str, notes: list[str]) -> dict[str, Any] | None:
    from kolm.evaluate.perplexity import perplexity
    from kolm.evaluate.sources import read_split_texts, read_texts

    cfg = ctx.cfg.eval
    if cfg.lm_file:
        texts, source = read_texts(cfg.lm_file, cfg.text_field), cfg.lm_file
        ctx.input(cfg.lm_file)
        if not texts:
            raise DataError(f"eval.lm_file {cfg.lm_file} holds no text in column {cfg.text_field!r}")
    else:
        data_dir = ctx.stage_dir("data")
        if not (data_dir / "validation").exists():
            notes.append(f"language modelling skipped: no validation split at {data_dir / 'validation'} (run `kolm data` or set eval.lm_file)")
            return None
        ctx.input(data_dir / "validation")
        texts, source = read_split_texts(data_dir, "validation", cfg.text_field), "data/validation"
    n = min(len(texts), cfg.lm_max_docs) if cfg.lm_max_docs else len(texts)
    with ctx.task("eval: perplexity", total=n) as bar:
        out = perplexity(model, tok, texts, cfg.max_length, cfg.stride, device, cfg.lm_max_docs, bar)
    return {"source": source, **out}


def _labelled(ctx: Any, path: str | None, default: str, labels: list[str]) -> list[tuple[str, str]] | None:
    from kolm.evaluate.sources import read_labelled

    p = Path(path) if path else assets_dir() / default
    if not p.exists() and not path:
        return None
    pairs, _ = read_labelled(p, labels, ctx.cfg.eval.labelled_text_field, ctx.cfg.eval.label_field)
    ctx.input(p)
    return pairs


def _fewshot(ctx: Any, model: Any, tok: Any, name: str, device: str, notes: list[str]) -> dict[str, Any] | None:
    from kolm.evaluate.fewshot import evaluate_fewshot
    from kolm.evaluate.perplexity import context_length
    from kolm.evaluate.prompts import load_fewshot_template
    from kolm.evaluate.sources import count_parameters, load_causal_lm

    cfg = ctx.cfg.eval
    template = load_fewshot_template(cfg.fewshot_template)
    examples = _labelled(ctx, cfg.fewshot_file, "reviews_test.jsonl", template.labels)
    pool = _labelled(ctx, cfg.fewshot_pool, "reviews_train.jsonl", template.labels) or []
    if examples is None:
        notes.append("few-shot skipped: embedded reviews_test.jsonl not found (set eval.fewshot_file)")
        return None
    if cfg.fewshot_max_examples and len(examples) > cfg.fewshot_max_examples:
        # a seeded random subset (file order may group labels), kept in file order
        import random

        keep = sorted(random.Random(ctx.cfg.seed).sample(range(len(examples)), cfg.fewshot_max_examples))
        examples = [examples[i] for i in keep]
    if not examples:
        raise DataError("few-shot: no labelled examples to classify; check eval.fewshot_file")
    if max(cfg.fewshot_k) > 0 and not pool:
        raise DataError("few-shot: k > 0 needs demonstrations; set eval.fewshot_pool to a labelled jsonl")
    models = [(name, None)] + [(_name(Path(p), ctx), Path(p)) for p in cfg.fewshot_models]
    out: dict[str, Any] = {"template": template.name, "verbalizers": template.verbalizers, "models": []}
    samples: list[dict[str, Any]] = []
    for mname, mpath in models:
        m, t = (model, tok) if mpath is None else load_causal_lm(mpath, device)
        if mpath is not None:
            ctx.input(mpath)
        rows = []
        with ctx.task(f"eval: few-shot {mname}", total=len(examples) * len(cfg.fewshot_k)) as bar:
            for k in cfg.fewshot_k:
                r = evaluate_fewshot(m, t, template, examples, pool, k, ctx.cfg.seed, cfg.calibrate, device, context_length(m), bar)
                row = {"k": k, "n": r["raw"]["n"], "accuracy": r["raw"]["accuracy"], "macro_f1": r["raw"]["macro_f1"],
                       "confusion_matrix": r["raw"]["confusion_matrix"], "shots": r["shots"]}
                if "calibrated" in r:
                    row.update(calibrated_accuracy=r["calibrated"]["accuracy"], calibrated_macro_f1=r["calibrated"]["macro_f1"], prior=r["prior"])
                rows.append(row)
                samples += [{"kind": "fewshot", "model": mname, "k": k, **p} for p in r["predictions"]]
        out["models"].append({"name": mname, "params": count_parameters(m), "results": rows})
        if mpath is not None:
            del m
    out["_samples"] = samples
    return out


def _prompts(ctx: Any, notes: list[str]) -> list[dict[str, str]] | None:
    from kolm.evaluate.sources import read_prompts

    cfg = ctx.cfg.eval
    p = Path(cfg.prompts_file) if cfg.prompts_file else assets_dir() / "eval_prompts.jsonl"
    if not p.exists() and not cfg.prompts_file:
        notes.append("generation skipped: embedded eval_prompts.jsonl not found (set eval.prompts_file)")
        return None
    prompts = read_prompts(p)
    ctx.input(p)
    return prompts[: cfg.max_prompts] if cfg.max_prompts else prompts


def _generate_all(ctx: Any, model: Any, tok: Any, prompts: list[dict[str, str]], label: str, chat: bool, device: str) -> list[str]:
    from kolm.evaluate.generation import format_prompt, generate
    from kolm.evaluate.perplexity import context_length

    cfg = ctx.cfg.eval
    outs = []
    with ctx.task(f"eval: generate ({label})", total=len(prompts)) as bar:
        for p in prompts:
            outs.append(generate(model, tok, format_prompt(tok, p["prompt"], chat), cfg.max_new_tokens, False, device=device,
                                 max_context=context_length(model), add_bos=not chat))
            bar.advance(1)
    return outs


def _metrics_for(ctx: Any, prompts: list[dict[str, str]], outputs: list[str]) -> dict[str, Any] | None:
    from kolm.evaluate.textmetrics import generation_metrics

    pairs = [(o, p["reference"]) for o, p in zip(outputs, prompts) if p["reference"]]
    if not pairs:
        return None
    return generation_metrics([o for o, _ in pairs], [r for _, r in pairs], ctx.cfg.eval.bleu_tokenize, ctx.cfg.eval.rouge_tokenizer)


def _variations(ctx: Any, model: Any, tok: Any, prompts: list[dict[str, str]], device: str, label: str, chat: bool) -> list[dict[str, Any]]:
    import torch

    from kolm.evaluate.generation import format_prompt, generate
    from kolm.evaluate.perplexity import context_length
    from kolm.evaluate.prompts import load_variations

    cfg = ctx.cfg.eval
    variants = load_variations("variations", cfg.variants)
    rows = []
    chosen = prompts[: cfg.variation_prompts]
    with ctx.task(f"eval: prompt variations ({label})", total=len(chosen) * len(variants)) as bar:
        for p in chosen:
            outputs = {}
            for v in variants:
                torch.manual_seed(ctx.cfg.seed)  # same random stream for every variant: differences come from the prompt
                outputs[v.name] = generate(model, tok, format_prompt(tok, v.render(p["prompt"]), chat), cfg.max_new_tokens, cfg.temperature > 0,
                                           cfg.temperature, cfg.top_p, device, context_length(model), add_bos=not chat)
                bar.advance(1)
            rows.append({"id": p["id"], "prompt": p["prompt"], "outputs": outputs})
    return rows


def _classify(ctx: Any, task_dir: Path, device: str) -> dict[str, Any]:
    from kolm.evaluate.classification import classification_report
    from kolm.evaluate.generation import predict_labels
    from kolm.evaluate.sources import load_classifier, read_labelled

    cfg = ctx.cfg.eval
    ctx.input(task_dir)
    model, tok, labels = load_classifier(task_dir, device, ctx.stage_dir("pretrain") / "final")
    if cfg.classify_file:
        pairs, labels = read_labelled(cfg.classify_file, cfg.labels or labels, cfg.labelled_text_field, cfg.label_field)
        ctx.input(cfg.classify_file)
        source = cfg.classify_file
    else:
        from kolm.finetune.data import load_classification

        data = load_classification(ctx.cfg.finetune.classify, seed=ctx.cfg.seed)
        split = data.test or data.validation
        if [str(x) for x in data.labels] != labels:
            raise DataError(f"the classifier's labels {labels} differ from the data's {data.labels}; re-run `kolm finetune`")
        pairs = [(t, labels[i]) for t, i in split]
        source = f"finetune.classify ({ctx.cfg.finetune.classify.kind}, {'test' if data.test else 'validation'})"
    if not pairs:
        raise DataError("no labelled examples to evaluate the classifier on; set eval.classify_file")
    preds = predict_labels(model, tok, [t for t, _ in pairs], ctx.cfg.finetune.seq_len, device=device)
    return {"source": source, **classification_report([lab for _, lab in pairs], preds, labels)}


def _judge(ctx: Any, prompts: list[dict[str, str]], systems: dict[str, list[str]]) -> dict[str, Any]:
    from kolm.evaluate.judge import JudgeClient, aggregate_pairwise, aggregate_rubric, judge_pair, judge_rubric

    jc = ctx.cfg.eval.judge
    client = JudgeClient(jc.base_url, jc.model, jc.api_key_env, jc.timeout)
    items = prompts[: jc.max_items]
    out: dict[str, Any] = {"base_url": jc.base_url, "model": jc.model, "mode": jc.mode, "swap": jc.swap}
    names = list(systems)
    if jc.mode == "pairwise" and len(names) >= 2:
        a, b = names[:2]
        with ctx.task(f"eval: judge {a} vs {b}", total=len(items)) as bar:
            results = []
            for i, p in enumerate(items):
                results.append({"id": p["id"], **judge_pair(client, p["prompt"], systems[a][i], systems[b][i], jc.swap)})
                bar.advance(1)
        out.update(systems=[a, b], results=results, aggregate=aggregate_pairwise(results, (a, b)))
        return out
    out["mode"] = "rubric"
    agg, results = {}, []
    with ctx.task("eval: judge rubric", total=len(items) * len(names)) as bar:
        for name in names:
            rs = []
            for i, p in enumerate(items):
                rs.append({"system": name, "id": p["id"], **judge_rubric(client, p["prompt"], systems[name][i], p["reference"] or None)})
                bar.advance(1)
            agg[name] = aggregate_rubric(rs)
            results += rs
    out.update(systems=names, results=results, aggregate=agg)
    return out


# ----------------------------------------------------------------------------
# The stage


def run(ctx: Any) -> StageResult:
    """Evaluate the run's (or eval.model's) language model and any fine-tuned models."""
    from kolm.evaluate.sources import count_parameters, load_causal_lm, load_finetuned

    cfg = ctx.cfg.eval
    device = resolve_device(cfg.device or ctx.cfg.device)
    seed_everything(ctx.cfg.seed)
    if cfg.judge.base_url:
        from kolm.evaluate.judge import JudgeClient

        jc = cfg.judge
        JudgeClient(jc.base_url, jc.model, jc.api_key_env, jc.timeout).check()
    model_dir = main_model_dir(ctx)
    model, tok = load_causal_lm(model_dir, device)  # checks the dir before ctx.input hashes it
    ctx.input(model_dir)
    name = _name(model_dir, ctx)
    res: dict[str, Any] = {"model": str(model_dir), "params": count_parameters(model), "device": device}
    notes: list[str] = []
    samples_path = ctx.out / "samples.jsonl"
    samples_path.unlink(missing_ok=True)

    if cfg.lm and (lm := _lm(ctx, model, tok, device, notes)):
        res["lm"] = lm
        ctx.log(f"eval: perplexity {lm['perplexity']:.2f}, {lm['bpc']:.3f} bits/char on {lm['source']}")
    if cfg.fewshot and (fs := _fewshot(ctx, model, tok, name, device, notes)):
        for s in fs.pop("_samples"):
            append_jsonl(samples_path, s)
        res["fewshot"] = fs

    prompts = _prompts(ctx, notes) if (cfg.generation or cfg.judge.base_url) else None
    systems: dict[str, list[str]] = {}
    if prompts:
        systems[name] = _generate_all(ctx, model, tok, prompts, name, False, device)
        if cfg.generation:
            res["generation"] = {}
            if m := _metrics_for(ctx, prompts, systems[name]):
                res["generation"][name] = m
            res["variations"] = {name: _variations(ctx, model, tok, prompts, device, name, False)}
            res["variants"] = list(cfg.variants)

    ft_dir = ctx.stage_dir("finetune")
    if cfg.finetuned and ft_dir.exists():
        res["finetuned"] = {}
        if (ft_dir / "classify").exists():
            res["finetuned"]["classify"] = _classify(ctx, ft_dir / "classify", device)
        if (ft_dir / "sft").exists() and prompts:
            ctx.input(ft_dir / "sft")
            sft, sft_tok, _ = load_finetuned(ft_dir / "sft", "sft", device, model_dir)
            systems["sft"] = _generate_all(ctx, sft, sft_tok, prompts, "sft", True, device)
            if cfg.generation:
                if m := _metrics_for(ctx, prompts, systems["sft"]):
                    res["generation"]["sft"] = m
                res["variations"]["sft"] = _variations(ctx, sft, sft_tok, prompts, device, "sft", True)
    for sys_name, outs in systems.items():
        for p, o in zip(prompts or [], outs):
            append_jsonl(samples_path, {"kind": "generation", "model": sys_name, "id": p["id"], "prompt": p["prompt"], "output": o, "reference": p["reference"]})
    for sys_name, rows in res.get("variations", {}).items():
        for row in rows:
            for v, o in row["outputs"].items():
                append_jsonl(samples_path, {"kind": "variation", "model": sys_name, "id": row["id"], "variant": v, "prompt": row["prompt"], "output": o})

    if cfg.judge.base_url and prompts:
        # the fine-tuned model first: the headline is "how often does fine-tuning win?"
        order = sorted(systems, key=lambda s: s != "sft")
        res["judge"] = _judge(ctx, prompts, {s: systems[s] for s in order})
    res["notes"] = notes
    for n in notes:
        ctx.log(n)

    write_json(ctx.out / "eval.json", res)
    plot = tables.fewshot_plot(res["fewshot"], ctx.out / "fewshot.png") if "fewshot" in res else None
    summary = _markdown(res, plot, full=False)
    (ctx.out / "summary.md").write_text(summary, encoding="utf-8")
    (ctx.out / "eval.md").write_text(_markdown(res, plot, full=True), encoding="utf-8")
    outputs = {"eval": "eval/eval.json", "report": "eval/eval.md", "summary": "eval/summary.md"}
    if samples_path.exists():
        outputs["samples"] = "eval/samples.jsonl"
    return StageResult(outputs=outputs, metrics=_headline(res))


def _headline(res: dict[str, Any]) -> dict[str, Any]:
    """Flat metrics for the manifest."""
    m: dict[str, Any] = {}
    if "lm" in res:
        m.update({"lm.perplexity": round(res["lm"]["perplexity"], 4), "lm.bpc": round(res["lm"]["bpc"], 5)})
    for model in res.get("fewshot", {}).get("models", [])[:1]:
        for r in model["results"]:
            m[f"fewshot.k{r['k']}.accuracy"] = round(r["accuracy"], 4)
            if r.get("calibrated_accuracy") is not None:
                m[f"fewshot.k{r['k']}.calibrated_accuracy"] = round(r["calibrated_accuracy"], 4)
    for name, g in res.get("generation", {}).items():
        key = "sft" if name == "sft" else "lm"
        for k in ("bleu", "chrf", "rougeL"):
            m[f"generation.{key}.{k}"] = round(g[k], 4)
    if c := res.get("finetuned", {}).get("classify"):
        m.update({"classify.accuracy": round(c["accuracy"], 4), "classify.macro_f1": round(c["macro_f1"], 4)})
    if j := res.get("judge"):
        if j["mode"] == "pairwise":
            m[f"judge.win_rate_{j['systems'][0]}"] = round(j["aggregate"][f"win_rate_{j['systems'][0]}"], 4)
        else:
            for s, a in j["aggregate"].items():
                m[f"judge.{s}.mean"] = a["mean"]
    return m


def _markdown(res: dict[str, Any], plot: Path | None, full: bool) -> str:
    """eval.md (full, with every variation) or summary.md (tables, a few samples)."""
    parts = ["# 평가 (Evaluation)", "", f"Model: `{res['model']}` · {res['params']:,} parameters · device {res['device']}"]
    if "lm" in res:
        parts += ["", "## Language modelling (언어 모델링)", "", tables.lm_table(res["lm"]),
                  "", "Bits per character/byte do not depend on the tokenizer; perplexity does."]
    if "fewshot" in res:
        fs = res["fewshot"]
        verb = ", ".join(f"{k} → {v}" for k, v in fs["verbalizers"].items())
        parts += ["", "## Few-shot in-context classification (퓨샷 분류)", "",
                  f"Template `{fs['template']}`; label words {verb}; prediction = the label word with the highest log-likelihood. "
                  "Calibrated: divided by the prior measured on content-free inputs.", "", tables.fewshot_table(fs)]
        if plot:
            parts += ["", f"![few-shot accuracy]({plot.name})"]
        if len(fs["models"]) == 1:
            parts += ["", "To see the effect of model size, list more model dirs in `eval.fewshot_models`."]
    if res.get("generation"):
        parts += ["", "## Generation metrics (생성 평가)", "", tables.generation_table(res["generation"])]
    if res.get("variations"):
        parts += ["", "## Prompt variations (프롬프트 변형)", "", "The same questions asked three ways; same seed for every variant, sampled outputs side by side."]
        for sys_name, rows in res["variations"].items():
            parts += ["", f"**{sys_name}**", "", tables.variations_table(rows if full else rows[:2], res["variants"])]
        if not full:
            parts += ["", "All prompts and outputs: `eval.md`, `samples.jsonl`."]
    if c := res.get("finetuned", {}).get("classify"):
        parts += ["", "## Fine-tuned classifier (미세조정 분류기)", "", tables.classify_section(c)]
    if j := res.get("judge"):
        parts += ["", "## LLM-as-judge (LLM 심사)", "", tables.judge_section(j)]
    if res.get("notes"):
        parts += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(parts) + "\n"
