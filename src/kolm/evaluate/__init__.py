"""Evaluation: perplexity, classification, few-shot, generation metrics, LLM-as-judge."""
