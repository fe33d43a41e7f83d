"""Durable Raft storage: a segmented write-ahead log on local disk (docs/storage.md)."""

from .disk import DiskStorage
from .errors import (
    CorruptStorageError,
    StorageError,
    StorageFatalError,
    StorageIdentityError,
    StorageInUseError,
)

__all__ = [
    "CorruptStorageError",
    "DiskStorage",
    "StorageError",
    "StorageFatalError",
    "StorageIdentityError",
    "StorageInUseError",
]
