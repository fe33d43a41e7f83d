"""Raft core: sans-I/O. See node.py for the API and ready.py for the driver loop."""
