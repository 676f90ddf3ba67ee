"""Fixtures of the server tests: a tiny Korean model that never ends early, and one running server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from kolm_testkit import make_model, tokenizer  # noqa: E402,F401  (fixtures)
from servekit import API_KEY, MODEL_NAME  # noqa: E402


@pytest.fixture(scope="session")
def serve_model_dir(tmp_path_factory, tokenizer):  # noqa: F811
    """A tiny KolmGPT with a 512-token context whose head never picks EOS or <|end|>.

    Every reply then runs to max_tokens, so lengths, timing of long answers and
    cancellation are predictable.
    """
    import torch

    model = make_model(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_seq_len=512,
    )
    with torch.no_grad():
        for token in ("</s>", "<|end|>"):
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0  # logit 0, below the sharpened best
    out = tmp_path_factory.mktemp("serve_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def server(serve_model_dir):
    """`kolm serve` on 127.0.0.1 (a free port), API key on, chat page mounted; stopped at the end."""
    from kolm.serve.server import Server

    s = Server(
        serve_model_dir, model_name=MODEL_NAME, api_key=API_KEY, max_batch=8, max_queue=16, max_tokens_cap=480
    ).start(host="127.0.0.1", port=0)
    yield s
    s.stop()


@pytest.fixture
def client(server):
    from openai import OpenAI

    with OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60) as c:
        yield c
