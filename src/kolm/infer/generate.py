"""The one generation entry point: kolm's engine for kolm models, HF `generate()` for foreign ones.

Evaluation, pretraining samples, `kolm generate`, `kolm chat` (and next the
server and RL rollouts) all call `generator_for(model, tokenizer)` or the two
helpers below, with the same `SamplingParams`:

    completions = generate(model, tokenizer, ["이 영화는"], SamplingParams(max_new_tokens=32, temperature=0))
    for piece in generator_for(model, tokenizer).stream("옛날 옛적에", params):
        print(piece, end="")

A model that brings its own inference state (`new_cache`, every kolm
architecture) runs on `kolm.infer.engine.Engine`: preallocated cache, batched
left-padded prefill, streaming that never takes text back. Any other causal LM
(a Hugging Face model dir) runs through `transformers`' `generate()` behind
the same two methods, so callers never branch on the model type.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from kolm.errors import KolmError
from kolm.infer.engine import Completion, Engine
from kolm.infer.sampling import SamplingParams

__all__ = [
    "generator_for",
    "generate",
    "render_prompt",
    "chat_eos_ids",
    "HFGenerator",
    "Completion",
    "SamplingParams",
]


def render_prompt(tokenizer: Any, prompt: str, chat: bool) -> str:
    """The prompt as the model was trained to see it: the chat template for chat models, plain text otherwise."""
    if chat and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def chat_eos_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and kolm's end-of-turn token `<|end|>`."""
    end = tokenizer.convert_tokens_to_ids("<|end|>") if "<|end|>" in tokenizer.get_vocab() else None
    return [i for i in dict.fromkeys((tokenizer.eos_token_id, end)) if i is not None and i != tokenizer.unk_token_id]


def generator_for(model: Any, tokenizer: Any, compile: bool = False) -> Engine | HFGenerator:
    """Our engine when the model brings its own inference state, else HF `generate()` behind the same calls.

    `compile`: run the engine's decode steps compiled (`Engine(compile=True)`):
    tens of seconds before the first token, faster tokens after.

    Prompt-learning PEFT adapters (prompt/prefix tuning) add virtual tokens in
    front of every input, which the engine's cache does not account for; they
    run through `generate()` of the PEFT model.
    """
    peft_config = getattr(model, "active_peft_config", None)  # None for a model without adapters
    if hasattr(model, "new_cache") and not getattr(peft_config, "is_prompt_learning", False):
        return Engine(model, tokenizer, compile=compile)
    return HFGenerator(model, tokenizer)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[int]],
    params: SamplingParams | None = None,
    *,
    add_bos: bool = True,
    fit_context: bool = False,
) -> list[Completion]:
    """Complete a batch of prompts; one `Completion` per prompt, in order.

    `add_bos` prepends BOS (pretraining documents begin with it; prompts already
    rendered by a chat template should pass False). `fit_context` keeps only
    the last tokens of a prompt so that prompt + `max_new_tokens` fit the
    model's context, instead of failing on a long prompt. The model's
    train/eval mode is restored afterwards, so training hooks can call this.
    """
    params = params or SamplingParams()
    gen = generator_for(model, tokenizer)
    ids = [gen.encode(p, add_bos=add_bos) for p in prompts]
    if fit_context and gen.max_positions:
        room = max(1, gen.max_positions - params.max_new_tokens)
        ids = [p[-room:] for p in ids]
    was_training = model.training
    try:
        return gen.generate(ids, params)
    finally:
        model.train(was_training)


class HFGenerator:
    """`transformers`' `generate()` behind the engine's `encode`/`generate`/`stream` calls, for foreign models."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    def encode(self, prompt: str | list[int], add_bos: bool = True) -> list[int]:
        """Token ids of a prompt (ids pass through); a BOS is prepended when the tokenizer has one."""
        if not isinstance(prompt, str):
            return list(prompt)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def _kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "repetition_penalty": params.repetition_penalty,
        }
        if not params.greedy:
            kw.update(temperature=params.temperature, top_k=params.top_k or None, top_p=params.top_p)
        if params.eos_token_ids is not None:
            kw["eos_token_id"] = list(params.eos_token_ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        kw["pad_token_id"] = pad if pad is not None else 0
        return kw

    @torch.inference_mode()
    def _run(self, prompts: list[list[int]], params: SamplingParams) -> tuple[list[list[int]], list[str]]:
        """Generated ids and finish reasons per row (left-padded batch through `generate()`)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise KolmError("every prompt needs at least one token")
        width = max(len(p) for p in prompts)
        if self.max_positions and width > self.max_positions:
            raise KolmError(
                f"prompt of {width} tokens exceeds the model's max positions {self.max_positions}; shorten it"
            )
        kw = self._kwargs(params)
        ids = torch.full((len(prompts), width), kw["pad_token_id"], dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kw)
        eos = set(kw.get("eos_token_id") or []) or {
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        }
        rows, reasons = [], []
        for row in out[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), None)
            rows.append(row if cut is None else row[:cut])
            reasons.append("length" if cut is None else "eos")
        return rows, reasons

    def generate(self, prompts: Sequence[str | list[int]], params: SamplingParams | None = None) -> list[Completion]:
        """Complete a batch of prompts; stop strings cut the text as the engine does."""
        params = params or SamplingParams()
        encoded = [self.encode(p) for p in prompts]
        rows, reasons = self._run(encoded, params)
        done = []
        for p, row, reason in zip(encoded, rows, reasons):
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            for s in params.stop:
                i = text.find(s)
                if i >= 0:
                    text, reason = text[: i + len(s) if params.include_stop else i], "stop"
            done.append(Completion(token_ids=row, text=text, finish_reason=reason, prompt_tokens=len(p)))
        return done

    def stream(
        self, prompt: str | list[int], params: SamplingParams | None = None, completion: Completion | None = None
    ) -> Iterator[str]:
        """The finished text as one piece (HF `generate()` is not stepped here); fills `completion`."""
        result = self.generate([prompt], params)[0]
        if completion is not None:
            completion.token_ids, completion.text = result.token_ids, result.text
            completion.finish_reason, completion.prompt_tokens = result.finish_reason, result.prompt_tokens
        if result.text:
            yield result.text
