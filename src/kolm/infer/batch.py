"""Continuous batching: one worker thread owns the model and serves many requests at once.

    engine = BatchEngine(model, tokenizer, max_batch=16, max_queue=64).start()
    request = engine.submit(engine.encode("안녕하세요"), SamplingParams(max_new_tokens=32, temperature=0))
    for event in request.events():          # or pass sink= to receive events on another thread's loop
        print(event.text, end="")
    engine.stop()

The worker repeats one loop:

1. retire cancelled requests (a client that went away frees its row at once);
2. admit waiting requests while rows are free, up to a prompt-token budget per
   loop so running streams are not starved: each is prefilled alone
   (`model.new_cache(1, n)`, the same computation as single-prompt generation),
   its first token is sampled, and its state moves into a row of the batch
   state (`kolm.infer.slots`);
3. one batched decode step for every running row, each row at its own
   position, then per-row sampling with that request's parameters and random
   generator;
4. stream each new token's text to its request, retire finished rows.

Because prefill is per request and a decode row only ever attends to its own
keys, a request's tokens do not depend on which other requests share the
batch: greedy output equals `kolm generate`, and a seeded request samples the
same tokens alone or in company (up to float rounding of batched matmuls).

Models without their own inference state (foreign Hugging Face models) are
served one request at a time through `HFGenerator` by the same worker.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from kolm.errors import KolmError
from kolm.infer.engine import Completion, Engine
from kolm.infer.sampling import SamplingParams, sample_next
from kolm.infer.slots import SlotState, slot_state_for
from kolm.infer.text import TextStream, token_bytes

__all__ = ["BatchEngine", "Request", "Event", "TokenLogprob", "QueueFullError"]


class QueueFullError(KolmError):
    """Too many requests are waiting; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class TokenLogprob:
    """Log-probability of a chosen token under the model, with the most likely alternatives."""

    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)  # the token's raw UTF-8 bytes (it may be half a character)


@dataclass
class Event:
    """What a request receives: "token" (new text, maybe empty while held back), then "done" or "error"."""

    kind: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "eos" | "stop" | "length" | "cancelled" on "done"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: str = ""  # on "error"


_ids = itertools.count(1)


class Request:
    """One generation request: its prompt, settings, progress and the channel its events go to."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        logprobs: int | None = None,
        sink: Callable[[Event], None] | None = None,
    ):
        self.id = next(_ids)
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.logprobs = logprobs  # None = off; n >= 0 = chosen token plus the n most likely
        self._queue: queue.SimpleQueue[Event] | None = None
        if sink is None:
            self._queue = queue.SimpleQueue()
            sink = self._queue.put
        self.sink = sink
        self.cancelled = threading.Event()
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.finish_reason: str | None = None
        self.token_ids: list[int] = []
        self.text = ""
        # Worker-side state, set at admission.
        self.limit = 0
        self.generated = 0
        self.last = 0
        self.eos: set[int] = set()
        self.stream: TextStream | None = None
        self.generator: torch.Generator | None = None
        self.seen: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def cancel(self) -> None:
        """Stop generating for this request; its row is freed before the next decode step."""
        self.cancelled.set()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until "done" or "error" (only for requests submitted without a sink); closing it cancels."""
        if self._queue is None:
            raise RuntimeError("this request delivers its events to its sink")
        try:
            while True:
                event = self._queue.get(timeout=timeout)
                yield event
                if event.kind != "token":
                    return
        finally:
            self.cancel()  # no-op when finished; stops generation when the consumer walks away


class BatchEngine:
    """A worker thread running continuous batching over one model; see the module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        prefill_tokens_per_step: int = 2048,
        device: str | torch.device | None = None,
    ):
        from kolm.infer.generate import generator_for

        if max_batch < 1 or max_queue < 0:
            raise KolmError("max_batch must be >= 1 and max_queue >= 0")
        self.single = generator_for(model, tokenizer)  # encoding, EOS ids, and the path for foreign models
        self.batched = isinstance(self.single, Engine)
        self.model = self.single.model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else self.single.device
        self.max_positions: int | None = self.single.max_positions
        self.max_batch, self.max_queue = max_batch, max_queue
        self.prefill_tokens_per_step = prefill_tokens_per_step
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []  # index i is row i of the slot state
        self._slots: SlotState | None = None
        self._cv = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Since start: tokens in and out, decode steps, the most rows one step decoded, cancelled requests.
        self.counters = {"prompt_tokens": 0, "completion_tokens": 0, "steps": 0, "peak_batch": 0, "cancelled": 0}

    # ------------------------------------------------------------------
    # public API

    def encode(self, prompt: str | list[int], add_bos: bool = True) -> list[int]:
        """Token ids of a prompt, as single-prompt generation encodes it."""
        return self.single.encode(prompt, add_bos=add_bos)

    def eos_ids(self, params: SamplingParams) -> set[int]:
        """Token ids that end a sequence for these settings."""
        if isinstance(self.single, Engine):
            return self.single._eos_ids(params)
        return set(params.eos_token_ids or [self.tokenizer.eos_token_id])

    def start(self) -> BatchEngine:
        """Start the worker thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kolm-batch-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker; requests still waiting or running end with an error event."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._gate.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for req in list(self._waiting) + self._running:
            self._fail(req, "the server is shutting down")
        self._waiting.clear()
        self._running.clear()

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        logprobs: int | None = None,
        sink: Callable[[Event], None] | None = None,
    ) -> Request:
        """Queue a request; raises `QueueFullError` when `max_queue` requests are already waiting."""
        if not prompt_ids:
            raise KolmError("every prompt needs at least one token")
        if self.max_positions and len(prompt_ids) >= self.max_positions:
            raise KolmError(
                f"prompt of {len(prompt_ids)} tokens leaves no room in the model's context of {self.max_positions}"
            )
        req = Request(prompt_ids, params, logprobs, sink)
        with self._cv:
            if self._stopping:
                raise KolmError("the engine is stopped")
            if len(self._waiting) >= self.max_queue and len(self._running) + len(self._waiting) >= self.max_batch:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting; try again shortly")
            self._waiting.append(req)
            self._cv.notify_all()
        return req

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Submit every prompt at once and wait for all (what a batch of concurrent clients would get)."""
        reqs = [self.submit(p, params) for p in prompts]
        out = []
        for req in reqs:
            for event in req.events():
                if event.kind == "error":
                    raise KolmError(event.message)
            out.append(
                Completion(
                    token_ids=req.token_ids,
                    text=req.text,
                    finish_reason=req.finish_reason or "length",
                    prompt_tokens=len(req.prompt_ids),
                )
            )
        return out

    def stats(self) -> dict[str, int]:
        """Requests waiting and running now, and token counters since start."""
        return {"waiting": len(self._waiting), "running": len(self._running), **self.counters}

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the worker between steps (nothing is admitted or decoded) for the duration of the block."""
        self._gate.clear()
        try:
            yield
        finally:
            self._gate.set()

    # ------------------------------------------------------------------
    # worker

    def _loop(self) -> None:
        from kolm.models.blocks import reuse_fused_weights

        with reuse_fused_weights(self.model), torch.inference_mode():
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and not self._running:
                        self._cv.wait()
                    if self._stopping:
                        return
                self._gate.wait()
                if self._stopping:
                    return
                try:
                    self._retire()  # cancelled requests leave before anything else runs
                    self._admit()
                    if self._running:
                        self._decode_step()
                        self._retire()
                except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the server
                    for req in self._running:
                        self._fail(req, f"generation failed: {type(exc).__name__}: {exc}")
                    self._running.clear()
                    self._slots = None

    def _admit(self) -> None:
        budget = self.prefill_tokens_per_step
        while len(self._running) < self.max_batch and (budget > 0 or not self._running):
            with self._cv:
                if not self._waiting:
                    return
                req = self._waiting.popleft()
            if req.cancelled.is_set():
                self._finish(req, "cancelled")
                continue
            budget -= len(req.prompt_ids)
            try:
                if self.batched:
                    self._prefill(req)
                else:
                    self._run_foreign(req)
            except Exception as exc:  # noqa: BLE001 - one bad request must not take the others down
                self._fail(req, f"generation failed: {type(exc).__name__}: {exc}")

    def _setup(self, req: Request) -> None:
        p = req.params
        room = self.max_positions - len(req.prompt_ids) if self.max_positions else p.max_new_tokens
        req.limit = max(0, min(p.max_new_tokens, room))
        req.eos = self.eos_ids(p)
        req.stream = TextStream(self.tokenizer, p.stop, p.include_stop)
        if p.seed is not None and not p.greedy:
            req.generator = torch.Generator(device=self.device).manual_seed(p.seed)
        if p.repetition_penalty != 1.0:
            req.seen = torch.zeros((1, self.model.config.vocab_size), dtype=torch.bool, device=self.device)
            req.seen[0, torch.tensor(req.prompt_ids, device=self.device)] = True

    def _prefill(self, req: Request) -> None:
        """Run the prompt alone, sample its first token, and move its state into a free row."""
        self._setup(req)
        self.counters["prompt_tokens"] += len(req.prompt_ids)
        if req.limit <= 0:
            self._finish(req, "length")
            return
        n = len(req.prompt_ids)
        ids = torch.tensor([req.prompt_ids], device=self.device)  # (1, n)
        state = self.model.new_cache(1, n, self.device)
        out = self.model(input_ids=ids, cache=state, use_cache=True, logits_to_keep=1)
        token, logprob = self._sample([req], out.logits[:, -1])[0]  # logits (1, V)
        self._accept(req, token, logprob)
        if req.done:
            return
        if self._slots is None:
            self._slots = slot_state_for(self.model, state, self.max_batch, self.max_positions or 4096)
        row = self._slots.insert(state)
        assert row == len(self._running)
        self._running.append(req)

    def _decode_step(self) -> None:
        """One token for every running row, each at its own position."""
        slots = self._slots
        assert slots is not None
        feed = torch.tensor([[r.last] for r in self._running], device=self.device)  # (B, 1)
        position_ids, mask = slots.begin_step()
        out = self.model(
            input_ids=feed,
            attention_mask=mask,
            position_ids=position_ids,
            cache=slots,
            use_cache=True,
            logits_to_keep=1,
        )
        slots.end_step()
        self.counters["steps"] += 1
        self.counters["peak_batch"] = max(self.counters["peak_batch"], len(self._running))
        for req, (token, logprob) in zip(self._running, self._sample(self._running, out.logits[:, -1])):
            self._accept(req, token, logprob)

    def _sample(self, reqs: list[Request], logits: torch.Tensor) -> list[tuple[int, TokenLogprob | None]]:
        """Next token (and its log-probability when asked) per row of (B, V) logits, with each row's settings."""
        logits = logits.float()
        tokens: list[int] = [0] * len(reqs)
        plain_greedy = [i for i, r in enumerate(reqs) if r.params.greedy and r.seen is None]
        if plain_greedy:  # one argmax for every greedy row
            picks = logits[plain_greedy].argmax(-1).tolist()
            for i, t in zip(plain_greedy, picks):
                tokens[i] = t
        skip = set(plain_greedy)
        for i, r in enumerate(reqs):
            if i in skip:
                continue
            # Row by row so each request draws from its own generator, as it would alone.
            tokens[i] = int(sample_next(logits[i : i + 1], r.params, r.seen, r.generator)[0])
            if r.seen is not None:
                r.seen[0, tokens[i]] = True
        lps: list[TokenLogprob | None] = [None] * len(reqs)
        wanted = [i for i, r in enumerate(reqs) if r.logprobs is not None]
        if wanted:
            logp = torch.log_softmax(logits[wanted], -1)  # (W, V), the model's own distribution
            for j, i in enumerate(wanted):
                n = reqs[i].logprobs or 0
                top = torch.topk(logp[j], n) if n else None
                lps[i] = TokenLogprob(
                    tokens[i],
                    self._piece(tokens[i]),
                    float(logp[j, tokens[i]]),
                    [(int(t), self._piece(int(t)), float(v)) for v, t in zip(*top)] if top is not None else [],
                    token_bytes(self.tokenizer, tokens[i]),
                )
        return list(zip(tokens, lps))

    def _piece(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def _accept(self, req: Request, token: int, logprob: TokenLogprob | None) -> None:
        """Record one sampled token: stream its text, finish on EOS, a stop string or the length limit."""
        if req.first_token_at is None:
            req.first_token_at = time.perf_counter()
        req.generated += 1
        self.counters["completion_tokens"] += 1
        assert req.stream is not None
        if token in req.eos:
            self._finish(req, "eos")  # the end-of-sequence token is not part of the text or its logprobs
            return
        req.token_ids.append(token)
        req.last = token
        piece = req.stream.push(token)
        if req.stream.stopped:
            self._finish(req, "stop", logprob, piece)
        elif req.generated >= req.limit:
            self._finish(req, "length", logprob, piece)
        else:
            req.sink(Event("token", text=piece, token_ids=[token], logprobs=[logprob] if logprob else []))

    def _finish(self, req: Request, reason: str, logprob: TokenLogprob | None = None, piece: str = "") -> None:
        if req.done:
            return
        if req.stream is not None:
            piece += req.stream.finish()
            req.text = req.stream.text
        req.finish_reason = reason
        req.finished_at = time.perf_counter()
        if reason == "cancelled":
            self.counters["cancelled"] += 1
        if piece or logprob is not None:
            last = [req.token_ids[-1]] if reason != "eos" and req.token_ids else []
            req.sink(Event("token", text=piece, token_ids=last, logprobs=[logprob] if logprob else []))
        req.sink(
            Event(
                "done",
                finish_reason=reason,
                prompt_tokens=len(req.prompt_ids),
                completion_tokens=req.generated,
            )
        )

    def _fail(self, req: Request, message: str) -> None:
        if req.done:
            return
        req.finish_reason = "error"
        req.finished_at = time.perf_counter()
        req.sink(Event("error", message=message))

    def _retire(self) -> None:
        """Free the rows of finished (and cancelled) requests; the last row moves into each hole."""
        for row in range(len(self._running) - 1, -1, -1):
            req = self._running[row]
            if req.cancelled.is_set() and not req.done:
                self._finish(req, "cancelled")
            if not req.done:
                continue
            assert self._slots is not None
            self._slots.remove(row)
            last = self._running.pop()
            if row < len(self._running):
                self._running[row] = last

    def _run_foreign(self, req: Request) -> None:
        """A model without its own inference state: the whole request through HF `generate()`, then its text."""
        self._setup(req)
        self.counters["prompt_tokens"] += len(req.prompt_ids)
        params = SamplingParams(**{**req.params.__dict__, "max_new_tokens": req.limit})
        result = self.single.generate([req.prompt_ids], params)[0]
        req.first_token_at = time.perf_counter()
        req.token_ids, req.generated = result.token_ids, len(result.token_ids)
        self.counters["completion_tokens"] += req.generated
        req.stream = None
        req.text = result.text or ""
        if req.text:
            req.sink(Event("token", text=req.text, token_ids=list(result.token_ids)))
        self._finish(req, result.finish_reason)
