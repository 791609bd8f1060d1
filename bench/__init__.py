"""Benchmarks: `python -m bench` (the gateway against raw pyzmq) and bench/journal_rate.py."""
