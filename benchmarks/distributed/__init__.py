"""1 against 2 gloo processes (python -m benchmarks.distributed): measure (the work each process runs)."""
