"""Benchmarks: `python -m bench.<name>`; results/*.json record the command that produced them."""
