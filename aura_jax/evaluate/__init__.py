"""Evaluation: metrics (this package), datasets and the harness (issue 5, in progress)."""
