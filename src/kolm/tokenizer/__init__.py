"""Tokenizer training and comparison for Korean."""
