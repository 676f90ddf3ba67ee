"""Tiny in-process tokenizers and models for the evaluation tests (nothing downloaded)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

WORDS = (
    "리뷰 감정 : 긍정 부정 좋다 싫다 최고 별로 영화 배우 연기 이야기 정말 너무 재미 없다 있다 . , ? "
    "다음은 와 그 또는 입니다 N/A 오늘 날씨 맑다 서울 한국 수도 질문 답 단계별로 차근차근 생각해 봅시다 "
    "당신은 친절하고 정확한 한국어 선생님 다음 질문에 답하세요 에서 의 는 은 이 가 을 를"
).split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tokenizer():
    """A word-level tokenizer over a fixed Korean vocabulary: each listed word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(dict.fromkeys(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_llama(vocab_size: int, max_positions: int = 64, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(tiny_tokenizer):
    return build_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer, tiny_lm):
    """An HF model dir (weights + tokenizer) like pretrain/final."""
    path = tmp_path_factory.mktemp("model") / "final"
    tiny_lm.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


class JudgeHandler(BaseHTTPRequestHandler):
    """Prefers the answer containing '서울'; if `biased`, always answers A (position bias)."""

    requests: list = []
    biased = False

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        if "[답변 A]" in prompt:
            a = prompt.split("[답변 A]")[1].split("[답변 B]")[0]
            verdict = "A" if (self.biased or "서울" in a) else "B"
            content = f"A가 더 정확합니다.\n판정: {verdict}" if verdict == "A" else f"B가 낫습니다.\n판정: {verdict}"
        else:
            answer = prompt.split("[답변]")[1]
            content = "좋은 답변입니다.\n점수: 5" if "서울" in answer else "틀렸습니다.\n점수: 1"
        data = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def judge_server():
    JudgeHandler.requests = []
    JudgeHandler.biased = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), JudgeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def judge_handler():
    """The handler class of `judge_server` (its `requests` log and `biased` switch)."""
    return JudgeHandler


@pytest.fixture(scope="session")
def make_llama():
    """The tiny-Llama builder, for tests that need more than one model."""
    return build_llama
