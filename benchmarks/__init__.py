"""Benchmarks of the embedded mesh: run ``python benchmarks/run_all.py`` (or ``tox -e bench``)."""
