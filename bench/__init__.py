"""Benchmark: the embedded sidecar vs its in-memory store vs DBOS (python -m bench)."""
