"""Bytes on the wire and on disk: msgpack codecs with strict decoding, and TCP framing.

raft_codec.py encodes Raft messages, hard state, snapshot metadata and log entries;
framing.py cuts a TCP byte stream into length-prefixed frames; sched_codec.py encodes the
scheduler's commands. Every decoder raises only `errors.WireDecodeError` on bad input.
"""
