"""Helpers shared by the test suites (real servers started in-process, test data)."""
