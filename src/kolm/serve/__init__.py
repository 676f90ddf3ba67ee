"""Serving: an OpenAI-compatible HTTP API over the continuous-batching engine, and a Gradio chat page."""
