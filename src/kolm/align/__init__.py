"""Alignment: reward model, DPO (TRL), PPO (written for kolm), GRPO (TRL), and the before/after measurement."""
