"""Pretraining: packing, the training loop, optimizer, schedule, checkpoints, distributed."""
