"""Training data: sources → checked examples → deterministic plan → grain batches."""

from aura_jax.data.pipeline import TrainData, format_stats, load_examples
from aura_jax.data.sources import DataError

__all__ = ["DataError", "TrainData", "format_stats", "load_examples"]
