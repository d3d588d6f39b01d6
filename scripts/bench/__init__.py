"""The benchmark's parts: data, systems under test, suites, results. Run through ``scripts/benchmark.py``."""
