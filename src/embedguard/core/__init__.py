"""The framework-neutral core: configuration, the pipeline, providers and resilience primitives.

Import public names from :mod:`embedguard`; the modules here may move between releases.
"""
