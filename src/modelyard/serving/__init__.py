"""Serving: deployments, dynamic batching, inference protocols."""
