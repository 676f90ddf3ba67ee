"""Data curation: sources, Korean normalization, filters, PII redaction, deduplication."""
