"""Limits, metering, usage, costs and budgets: what makes Modelyard a service for many teams.

- :mod:`~modelyard.usage.limits`: requests and tokens per minute (the ``limits`` library,
  in Redis or in memory), limits cached from the metadata store;
- :mod:`~modelyard.usage.meter`: inference use summed in memory and written in batches, jobs'
  use written as they finish;
- :mod:`~modelyard.usage.report`: usage and costs in buckets, and the roll-up of old rows;
- :mod:`~modelyard.usage.costs`: the price table;
- :mod:`~modelyard.usage.service`: what the routes call.
"""
