"""Command-line views of the stages: `kolm <command>`."""
