"""The framework-neutral core: configuration, the send path, providers and resilience primitives.

Import public names from :mod:`embedguard` and its public modules (:mod:`embedguard.events`,
:mod:`embedguard.usage`, :mod:`embedguard.cache`, :mod:`embedguard.exporters`,
:mod:`embedguard.profiles`); the modules here may move between releases.
"""
