"""pytest-benchmark suite settings: run with `make bench` (or `pytest benchmarks --benchmark-enable`)."""
