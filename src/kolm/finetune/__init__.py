"""Fine-tuning: classification and instruction SFT with full or PEFT methods."""
