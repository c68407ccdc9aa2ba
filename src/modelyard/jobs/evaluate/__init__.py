"""Evaluate jobs: one version's metrics, size and latency on a data set."""
