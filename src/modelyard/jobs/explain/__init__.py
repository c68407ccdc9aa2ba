"""Explain jobs: a version's global feature importance over rows of a data set."""
