"""Helpers shared by the tests: the counter behind a gateway (``market``), gateway processes."""
