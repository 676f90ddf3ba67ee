"""Model architectures written for kolm and packaged as Hugging Face models."""
