"""Language-modelling metrics from summed negative log-likelihoods: perplexity, bits per character and per byte.

Perplexity depends on the tokenizer (more tokens per sentence → lower per-token
perplexity), so we also report bits per character (bpc) and per UTF-8 byte
(bpb): the total negative log-likelihood of a text in bits divided by its
length. Those compare across tokenizers; a Hangul syllable is 1 character but
3 bytes. Everything here is plain arithmetic on numbers the caller summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LMScore", "perplexity_of", "bits"]

_MAX_NATS = 700.0  # exp(700) is about 1e304: an untrained model's perplexity stays a finite float


def perplexity_of(mean_nll: float) -> float:
    """exp(mean token NLL in nats), capped so that it stays a finite float."""
    return math.exp(min(mean_nll, _MAX_NATS))


def bits(nll_nats: float) -> float:
    """A negative log-likelihood in nats, in bits."""
    return nll_nats / math.log(2)


@dataclass
class LMScore:
    """Summed NLL over a set of documents and what it was divided by."""

    nll: float = 0.0  # nats, summed over scored tokens
    tokens: int = 0
    chars: int = 0
    bytes: int = 0
    docs: int = 0

    def add(self, nll: float, tokens: int, text: str) -> None:
        """Count one scored document: its summed NLL, scored tokens and the text they cover."""
        self.nll += nll
        self.tokens += tokens
        self.chars += len(text)
        self.bytes += len(text.encode("utf-8"))
        self.docs += 1

    def as_dict(self) -> dict[str, float | int]:
        """Mean NLL, perplexity, bpc and bpb (NaN where nothing was counted), and the counts."""
        mean = self.nll / self.tokens if self.tokens else float("nan")
        total_bits = bits(self.nll)
        return {
            "nll": mean,
            "perplexity": perplexity_of(mean),
            "bpc": total_bits / self.chars if self.chars else float("nan"),
            "bpb": total_bits / self.bytes if self.bytes else float("nan"),
            "tokens": self.tokens,
            "chars": self.chars,
            "docs": self.docs,
        }
