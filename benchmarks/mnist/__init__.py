"""Diff-SCM on MNIST (python -m benchmarks.mnist): settings -> run -> report; device.sh runs the gpu setting."""
