"""What this machine can encode: the benchmark, its cache and the capacity verdicts."""
