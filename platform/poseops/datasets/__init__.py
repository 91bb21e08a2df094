"""Derived datasets: Parquet shards of crops (no training targets) with a card written last, and the loader."""
