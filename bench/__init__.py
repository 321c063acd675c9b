"""Benchmarks: `python -m bench.throughput --help`."""
