"""The demo of ``python -m cqrs_ddd_persistence_mongo demo`` and the example order projection
that its tour, the tests and the benchmarks share.

A top-level package of its own, shipped in the same wheel as the library but outside it:
the library never imports it; only the command line loads it, lazily, when asked for the
demo (``cqrs_ddd_persistence_mongo.cli``).
"""
