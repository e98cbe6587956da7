"""Load generation for resilience tests: an open- or closed-loop HTTP load generator in a child process.

Public API::

    from pytest_clover.load.run import LoadGenerator, LoadRun, LoadGeneratorError
    from pytest_clover.load.result import LoadResult, PhaseStats

This ``__init__`` deliberately imports nothing: ``python -m pytest_clover.load.worker`` imports it before the
worker imports locust, which must monkey-patch the child process before ssl or threading-heavy modules load.
"""
