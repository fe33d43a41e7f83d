"""raftsched: a distributed job scheduler replicated by its own Raft log."""

__version__ = "0.1.0"
