"""Data utilities: degradation, loading, datasets and dataset preparation."""
