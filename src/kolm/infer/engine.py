"""Generation engine: prefill + decode over an explicit, preallocated inference state.

The engine owns the state object (`model.new_cache(...)`, a `KVCache` for
KolmGPT; any model without `new_cache` gets a Hugging Face `DynamicCache`) and
passes it to `model(..., cache=state)` at every step. One prefill pass runs
the whole (left-padded) prompt batch; each decode step then feeds one token per
row. Rows finish on EOS, on a stop string or at `max_new_tokens`; finished rows
keep feeding padding until every row is done.

    engine = Engine(model, tokenizer)
    engine.generate(["안녕하세요"], SamplingParams(max_new_tokens=32, temperature=0))
    for piece in engine.stream("옛날 옛적에", SamplingParams(temperature=0.8, top_p=0.9, seed=0)):
        print(piece, end="", flush=True)

`Engine(model, tokenizer, compile=True)` runs every decode step of a model
that has a fixed-shape `decode_step` (KolmGPT) through `torch.compile`
(weights frozen into the compiled step, so it is for a model that no longer
trains): the cache is sized to a power of two, so one compiled graph serves
every generation of that batch size. The compile costs tens of seconds on a
small CPU; it pays for long or many generations (`benchmarks/bench_generate.py`).
If compilation fails the engine decodes eagerly.

Streaming holds back text that could still become a stop string, and
incomplete UTF-8 (byte-level BPE splits a Hangul syllable over several
tokens), so what is printed is never taken back.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from kolm.errors import KolmError
from kolm.infer.sampling import SamplingParams, sample_next
from kolm.infer.text import held_back, stop_cut

__all__ = ["Engine", "Completion", "SamplingParams"]


@dataclass
class Completion:
    """One finished row: generated ids (without the prompt), their text, and why it stopped."""

    token_ids: list[int]
    text: str | None = None
    finish_reason: str = "length"  # "eos" | "stop" | "length"
    prompt_tokens: int = 0


@dataclass
class _Row:
    prompt_len: int
    ids: list[int] = field(default_factory=list)
    done: bool = False
    reason: str = "length"
    text: str | None = None  # final text when a stop string cut it


class Engine:
    """Batched generation with a KV cache, sampling, stop strings and streaming for one model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        device: str | torch.device | None = None,
        compile: bool = False,
    ):
        self.model = model.eval()
        self.compile = compile and hasattr(model, "decode_step")
        self._step: Any = None  # the compiled decode step, made at the first generation
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        config = model.config
        self.max_positions = getattr(config, "max_position_embeddings", None)
        pad = getattr(config, "pad_token_id", None)
        if pad is None and tokenizer is not None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0

    # ------------------------------------------------------------------
    # helpers

    def _eos_ids(self, params: SamplingParams) -> set[int]:
        if params.eos_token_ids is not None:
            return set(params.eos_token_ids)
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        for src in (
            getattr(gen, "eos_token_id", None),
            getattr(self.model.config, "eos_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            if src is not None:
                ids.update(src if isinstance(src, (list, tuple)) else [src])
                break
        return ids

    def encode(self, prompt: str | list[int], add_bos: bool = True) -> list[int]:
        """Token ids of a prompt (ids pass through); a BOS is prepended when the tokenizer has one."""
        if not isinstance(prompt, str):
            return list(prompt)
        if self.tokenizer is None:
            raise KolmError("this engine has no tokenizer; pass token ids or give Engine(model, tokenizer)")
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _decode_step(self) -> Any:
        """`model.decode_step` compiled (once per engine), or the plain one where compilation fails."""
        if self._step is None:
            # Freezing folds the weights (and their q/k/v, gate/up concatenation) into the compiled step; the C++
            # wrapper calls its kernels without a Python line per kernel (2-11% off an int8-wo `small` decode step).
            options = {"freezing": True, "cpp_wrapper": self.device.type == "cpu"}
            self._step = torch.compile(self.model.decode_step, dynamic=False, options=options)
        return self._step

    def _static_len(self, needed: int) -> int:
        """Cache size of a compiled decode: the next power of two, so one graph serves many lengths."""
        size = 1 << max(6, (needed - 1).bit_length())
        return min(size, self.max_positions) if self.max_positions else size

    def _new_state(self, batch: int, max_len: int) -> Any:
        if hasattr(self.model, "new_cache"):
            return self.model.new_cache(batch, max_len, self.device)
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    # ------------------------------------------------------------------
    # core loop

    def _steps(self, prompts: list[list[int]], params: SamplingParams) -> Iterator[list[_Row]]:
        """Run generation, reusing fused projection weights across steps; yield row states after every token."""
        from kolm.models.blocks import reuse_fused_weights

        with reuse_fused_weights(self.model):
            yield from self._run(prompts, params)

    @torch.inference_mode()
    def _run(self, prompts: list[list[int]], params: SamplingParams) -> Iterator[list[_Row]]:
        """Prefill, then decode token by token; yield the row states after every new token."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise KolmError("every prompt needs at least one token")
        B, L = len(prompts), max(len(p) for p in prompts)
        budget = params.max_new_tokens
        if self.max_positions:
            if L > self.max_positions:
                raise KolmError(
                    f"prompt of {L} tokens exceeds the model's max positions {self.max_positions}; shorten it"
                )
            budget = min(budget, self.max_positions - L)
        rows = [_Row(prompt_len=len(p)) for p in prompts]
        if budget <= 0:
            yield rows
            return
        eos = self._eos_ids(params)
        stops = list(params.stop)
        if stops and self.tokenizer is None:
            raise KolmError("stop strings need a tokenizer to decode text")
        dev = self.device
        gen = torch.Generator(device=dev).manual_seed(params.seed) if params.seed is not None else None

        # Left padding keeps every row's newest token in the last column, so one cache position serves all rows.
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, L + budget), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, L - len(p) :] = torch.tensor(p)
            mask[i, L - len(p) :] = 1
        mask[:, L:] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        padded = any(len(p) != L for p in prompts)
        positions = torch.tensor([[len(p)] for p in prompts], device=dev)  # next position per row (B, 1)
        seen = None
        if params.repetition_penalty != 1.0:
            vocab = self.model.config.vocab_size
            seen = torch.zeros((B, vocab), dtype=torch.bool, device=dev)
            for i, p in enumerate(prompts):
                seen[i, torch.tensor(p, device=dev)] = True

        static = self.compile and budget > 1
        state = self._new_state(B, self._static_len(L + budget) if static else L + budget)
        out = self.model(
            input_ids=ids, attention_mask=mask[:, :L] if padded else None, cache=state, use_cache=True, logits_to_keep=1
        )
        logits = out.logits[:, -1]  # (B, V)
        if static:
            keys = torch.ones((B, state.max_len), dtype=torch.bool, device=dev)  # columns each row may attend to
            keys[:, :L] = mask[:, :L].bool()
            column = torch.tensor(L, device=dev)  # where the next token's key goes, the same for every row
        for step in range(budget):
            nxt = sample_next(logits, params, seen, gen)  # (B,)
            chosen = nxt.tolist()
            for row, tok in zip(rows, chosen):
                if row.done:
                    continue
                if tok in eos:
                    row.done, row.reason = True, "eos"
                    continue
                row.ids.append(tok)
                if stops:
                    text = self._decode(row.ids)
                    cut = stop_cut(text, stops, params.include_stop)
                    if cut is not None:
                        row.done, row.reason, row.text = True, "stop", text[:cut]
            yield rows
            if all(r.done for r in rows) or step == budget - 1:
                return
            if seen is not None:
                seen.scatter_(1, nxt[:, None], True)
            # Finished rows keep decoding a pad token; their output is already final.
            if any(r.done for r in rows):
                feed = torch.tensor([[self.pad_id if r.done else t] for r, t in zip(rows, chosen)], device=dev)
            else:
                feed = nxt.view(B, 1)
            past = L + step
            if static:
                logits = self._static_step(feed, positions, column, keys, state)
                column += 1
            else:
                out = self.model(
                    input_ids=feed,
                    attention_mask=mask[:, : past + 1] if padded else None,
                    position_ids=positions if padded else None,
                    cache=state,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = out.logits[:, -1]
            positions = positions + 1

    def _static_step(self, *args: torch.Tensor) -> torch.Tensor:
        """One compiled decode step; on a compilation failure, this and every later step run eagerly."""
        step = self._decode_step()
        if step == self.model.decode_step:  # already fell back
            return step(*args)
        try:
            return step(*args)
        except Exception as e:  # noqa: BLE001 - a compiler missing or failing here is not the user's error
            warnings.warn(
                f"torch.compile of the decode step failed ({type(e).__name__}); decoding eagerly", stacklevel=2
            )
            self._step = self.model.decode_step
            return self._step(*args)

    # ------------------------------------------------------------------
    # public API

    def generate(self, prompts: list[str] | list[list[int]], params: SamplingParams | None = None) -> list[Completion]:
        """Complete a batch of prompts (strings or token-id lists); one Completion per prompt, in order."""
        params = params or SamplingParams()
        encoded = [self.encode(p) for p in prompts]
        rows: list[_Row] = [_Row(prompt_len=len(p)) for p in encoded]
        for rows in self._steps(encoded, params):  # noqa: B007 - the state after the last step is the result
            pass
        done = []
        for row in rows:
            text = row.text if row.text is not None else (self._decode(row.ids) if self.tokenizer is not None else None)
            done.append(
                Completion(token_ids=row.ids, text=text, finish_reason=row.reason, prompt_tokens=row.prompt_len)
            )
        return done

    def stream(
        self, prompt: str | list[int], params: SamplingParams | None = None, completion: Completion | None = None
    ) -> Iterator[str]:
        """Yield the generated text piece by piece for one prompt; fills `completion` (if given) at the end."""
        if self.tokenizer is None:
            raise KolmError("streaming text needs a tokenizer")
        params = params or SamplingParams()
        encoded = self.encode(prompt)
        emitted = 0
        row = _Row(prompt_len=len(encoded))
        for rows in self._steps([encoded], params):
            row = rows[0]
            text = row.text if row.text is not None else self._decode(row.ids)
            safe = len(text) if row.done else len(text) - held_back(text, params.stop)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        final = row.text if row.text is not None else self._decode(row.ids)
        if len(final) > emitted:
            yield final[emitted:]
        if completion is not None:
            completion.token_ids, completion.text = row.ids, final
            completion.finish_reason, completion.prompt_tokens = row.reason, row.prompt_len
