"""Inference: generation engine with KV cache, sampling, streaming; export."""
