"""Integrations with data-processing frameworks (each behind its own extra).

- :mod:`embedguard.integrations.ray`: embed a Ray Data ``Dataset`` with one client per actor
  (``pip install 'embedguard[ray]'``).
"""
