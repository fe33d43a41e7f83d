"""Baselines for `python -m bench.compare` (SPEC §9): the same job queue replicated by
pysyncobj, RQ on a local Redis, and the helpers that run them (processes on free loopback
ports, stopped by pid). Benchmark code only: nothing in raftsched imports it."""
