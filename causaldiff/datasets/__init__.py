"""Data sets: synthetic tabular SCMs with ground truth, procedural image SCMs, MNIST."""
