"""The demo of ``python -m cqrs_ddd_persistence_mongo demo`` and the example order projection
that its tour, the tests and the benchmarks share.

Shipped in the wheel (it is part of the package directory) but never imported by the
library: only the command line loads it, lazily, when asked for the demo.
"""
