"""Inference: the generation entry point (`generate.py`), the engine with its KV cache, sampling, streaming and continuous batching."""
