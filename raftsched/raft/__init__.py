"""Raft core: sans-I/O. See node.py for the API and ready.py for the driver loop."""

from .membership import ConfChangeDecodeError, decode_conf_change, encode_conf_change

__all__ = ["ConfChangeDecodeError", "decode_conf_change", "encode_conf_change"]
