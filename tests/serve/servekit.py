"""Names shared by the server tests and their fixtures."""

API_KEY = "test-key-123"
MODEL_NAME = "tiny-ko"
