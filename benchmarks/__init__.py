"""Speed and memory benchmarks (`make bench`); each writes JSON to `results/benchmarks/`."""
