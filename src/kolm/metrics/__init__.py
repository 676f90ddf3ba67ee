"""Metrics shared by fine-tuning, evaluation and alignment: classification, Korean text, language modelling."""
