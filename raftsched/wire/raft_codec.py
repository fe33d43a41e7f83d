"""msgpack encoding of Raft messages, hard state, snapshot metadata and log entries.

Theory of operation. Every record is ONE msgpack array whose first two elements are the
format version and a fixed type tag, followed by the type's fields in a fixed order:

    [version, tag, field_1, ..., field_n]

Messages (tags 1-11) carry MESSAGE_FORMAT_VERSION; the records written to disk (tags 32-34)
carry STORAGE_FORMAT_VERSION, so a change of the message layout does not make existing data
directories unreadable. Each decoder accepts exactly its record's current version.

Positional arrays (never string-keyed maps) keep the encoding compact and the decoder simple.
Field values use only four msgpack kinds: unsigned int, bool, bin (bytes stay bytes, never str)
and array. Two compound values appear inside records:

    entry       [term, index, kind, data]            kind is an EntryKind value
    membership  [voters, learners, removed]          each a strictly ascending array of ids

The tag table (`TAG_BY_TYPE`) and each type's field order (`FIELDS_BY_TYPE`) are the wire
format: never renumber a tag or reorder a field. A change of layout bumps the version of
its kind of record (message version 2: AppendEntriesResponse got its own rejection fields).

    tag  record                    fields after [version, tag]
      1  AppendEntries             term src dst prev_index prev_term entries commit
      2  AppendEntriesResponse     term src dst success match_index rejected_index
                                   hint_index hint_term needs_snapshot
      3  RequestVote               term src dst last_index last_term pre_vote transfer
      4  RequestVoteResponse       term src dst granted pre_vote
      5  Heartbeat                 term src dst commit context
      6  HeartbeatResponse         term src dst context
      7  InstallSnapshot           term src dst snapshot_index snapshot_term membership
                                   offset data done
      8  InstallSnapshotResponse   term src dst snapshot_index next_offset success
      9  TimeoutNow                term src dst
     10  ReadIndexRequest          term src dst context
     11  ReadIndexResponse         term src dst context index
     32  HardState                 term vote commit
     33  SnapshotMeta              index term membership
     34  Entry                     term index kind data

Decoding is strict, because the bytes come from the network or a disk: the exact number of
fields; ints are ints (never bools, and bools are never ints, although Python's bool is an int);
terms, indexes and offsets are non-negative; node ids (src, dst, membership) are positive; kinds
are known EntryKind values; memberships are canonical and disjoint; the entries of an
AppendEntries are contiguous from prev_index + 1 with terms that are at least 1, never
decrease, and never exceed the message's term, which is itself >= prev_term (§5.3: a leader
sends its own log, in order, and holds no entry newer than its term); an
AppendEntriesResponse is a success (only match_index set) or one kind of rejection (only
the rejection fields set; needs_snapshot excludes the others); no map, str or ext
anywhere; no trailing bytes; sizes within `DecodeLimits`, checked before anything is
allocated (see `_RecordReader`: a hostile array header cannot make the decoder allocate).
Anything else raises `WireDecodeError` naming the record and field, and never another
exception.

Encoding refuses what no decoder would accept (`WireError`): the same scalar checks, and the
same log-order check on entries, so a bug in the sender fails loudly at the sender rather than
as a dropped message at every receiver. The entries are the hot path (AppendEntries carries
up to thousands): encoding builds one list per entry, decoding builds one Entry per entry
behind one combined check, and only a bad entry takes the slow path that names the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ..raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ..raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from .errors import WireDecodeError, WireError

MESSAGE_FORMAT_VERSION: Final = 2  # 2: AppendEntriesResponse rejection fields
STORAGE_FORMAT_VERSION: Final = 1  # HardState, SnapshotMeta, Entry (on disk)

# Never renumber: these numbers are on disks and on the wire.
TAG_BY_TYPE: Final[dict[type[Any], int]] = {
    AppendEntries: 1,
    AppendEntriesResponse: 2,
    RequestVote: 3,
    RequestVoteResponse: 4,
    Heartbeat: 5,
    HeartbeatResponse: 6,
    InstallSnapshot: 7,
    InstallSnapshotResponse: 8,
    TimeoutNow: 9,
    ReadIndexRequest: 10,
    ReadIndexResponse: 11,
    HardState: 32,
    SnapshotMeta: 33,
    Entry: 34,
}
TYPE_BY_TAG: Final[dict[int, type[Any]]] = {tag: cls for cls, tag in TAG_BY_TYPE.items()}
MESSAGE_TAGS: Final = frozenset(TAG_BY_TYPE[cls] for cls in MESSAGE_TYPES)

# Field kinds: how each field is checked on decode.
UINT: Final = "uint"  # non-negative int: terms, indexes, offsets, contexts
NODE: Final = "node"  # positive int: a node id
NODE_OR_ZERO: Final = "node_or_zero"  # a node id, or 0 for "nobody" (HardState.vote)
BOOL: Final = "bool"
BYTES: Final = "bytes"
ENTRIES: Final = "entries"
MEMBERSHIP: Final = "membership"
ENTRY_KIND: Final = "entry_kind"

_ADDRESSED: Final = (("term", UINT), ("src", NODE), ("dst", NODE))
FIELDS_BY_TYPE: Final[dict[type[Any], tuple[tuple[str, str], ...]]] = {
    AppendEntries: (
        *_ADDRESSED,
        ("prev_index", UINT),
        ("prev_term", UINT),
        ("entries", ENTRIES),
        ("commit", UINT),
    ),
    AppendEntriesResponse: (
        *_ADDRESSED,
        ("success", BOOL),
        ("match_index", UINT),
        ("rejected_index", UINT),
        ("hint_index", UINT),
        ("hint_term", UINT),
        ("needs_snapshot", BOOL),
    ),
    RequestVote: (
        *_ADDRESSED,
        ("last_index", UINT),
        ("last_term", UINT),
        ("pre_vote", BOOL),
        ("transfer", BOOL),
    ),
    RequestVoteResponse: (*_ADDRESSED, ("granted", BOOL), ("pre_vote", BOOL)),
    Heartbeat: (*_ADDRESSED, ("commit", UINT), ("context", UINT)),
    HeartbeatResponse: (*_ADDRESSED, ("context", UINT)),
    InstallSnapshot: (
        *_ADDRESSED,
        ("snapshot_index", UINT),
        ("snapshot_term", UINT),
        ("membership", MEMBERSHIP),
        ("offset", UINT),
        ("data", BYTES),
        ("done", BOOL),
    ),
    InstallSnapshotResponse: (
        *_ADDRESSED,
        ("snapshot_index", UINT),
        ("next_offset", UINT),
        ("success", BOOL),
    ),
    TimeoutNow: _ADDRESSED,
    ReadIndexRequest: (*_ADDRESSED, ("context", UINT)),
    ReadIndexResponse: (*_ADDRESSED, ("context", UINT), ("index", UINT)),
    HardState: (("term", UINT), ("vote", NODE_OR_ZERO), ("commit", UINT)),
    SnapshotMeta: (("index", UINT), ("term", UINT), ("membership", MEMBERSHIP)),
    Entry: (("term", UINT), ("index", UINT), ("kind", ENTRY_KIND), ("data", BYTES)),
}
assert set(FIELDS_BY_TYPE) == set(TAG_BY_TYPE), "every tagged type has a field layout"
_NAMES_BY_TYPE: Final = {cls: tuple(name for name, _ in f) for cls, f in FIELDS_BY_TYPE.items()}
VERSION_BY_TYPE: Final[dict[type[Any], int]] = {
    cls: MESSAGE_FORMAT_VERSION if cls in MESSAGE_TYPES else STORAGE_FORMAT_VERSION
    for cls in TAG_BY_TYPE
}
assert len(TYPE_BY_TAG) == len(TAG_BY_TYPE), "tags are unique"

_APPEND_ENTRIES_SCALARS: Final = tuple(
    (name, kind) for name, kind in FIELDS_BY_TYPE[AppendEntries] if kind != ENTRIES
)

_HEADER_LEN: Final = 2  # [version, tag]
_ENTRY_LEN: Final = 4  # [term, index, kind, data]
_MEMBERSHIP_LEN: Final = 3  # [voters, learners, removed]
# The longest array other than entries and id lists: a record (2 + at most 9 fields).
_MAX_NESTED_ARRAY_LEN: Final = 16

# Lookup by exact int value. Guarded by `type(k) is int` first: True == 1 would match too.
_ENTRY_KIND_BY_VALUE: Final[dict[int, EntryKind]] = {int(k): k for k in EntryKind}


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on what a decoder accepts, so a hostile input cannot make it allocate much.

    Defaults leave room above RaftConfig's defaults (4,096 entries and 1 MiB per append,
    1 MiB snapshot chunks) because one oversized entry may still travel alone."""

    max_message_bytes: int = 64 << 20
    max_entries_per_message: int = 1 << 16
    max_membership_ids: int = 1 << 16  # voters + learners + removed (removed ids accumulate)

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_entries_per_message", "max_membership_ids"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DecodeLimits.{name} must be positive")


DEFAULT_LIMITS: Final = DecodeLimits()


# ---------------------------------------------------------------------------------------------
# Encoding


def _pack(obj: list[Any], what: str) -> bytes:
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode {what}: {exc}") from exc
    return packed


def _encode_membership(m: Membership, where: str) -> list[list[int]]:
    id_lists = [sorted(m.voters), sorted(m.learners), sorted(m.removed)]
    for ids in id_lists:
        for node_id in ids:
            if type(node_id) is not int or node_id <= 0:
                raise WireError(f"cannot encode {where}: node id {node_id!r} is not positive")
    return id_lists


def _encode_entries(msg: AppendEntries) -> list[list[Any]]:
    # Pair check with the decoder (TigerBeetle style): refuse to send what no peer accepts.
    expected_index = msg.prev_index + 1
    last_term = max(msg.prev_term, 1)  # term 0 holds no entries: it is the empty log's
    term_max = msg.term
    out: list[list[Any]] = []
    append = out.append
    for e in msg.entries:
        t = e.term
        if e.index != expected_index or t < last_term or t > term_max:
            raise WireError(
                f"cannot encode AppendEntries: entry (term {t}, index {e.index}) breaks log "
                f"order after (index {expected_index - 1}, term {last_term}) in term {term_max}"
            )
        append([t, expected_index, e.kind, e.data])
        expected_index += 1
        last_term = t
    return out


def _check_for_encoding(cls: type[Any], name: str, kind: str, value: object) -> None:
    """Refuse to send what no decoder accepts: the pair of the decoder's scalar checks."""
    try:
        _SCALAR_CHECKERS[kind](value, f"{cls.__name__}.{name}")
    except WireDecodeError as exc:
        raise WireError(f"cannot encode {exc}") from None


def _fields_for_encoding(obj: Any) -> list[Any]:
    cls = type(obj)
    out: list[Any] = [VERSION_BY_TYPE[cls], TAG_BY_TYPE[cls]]
    for name, kind in FIELDS_BY_TYPE[cls]:
        value = getattr(obj, name)
        if kind == MEMBERSHIP:
            value = _encode_membership(value, f"{cls.__name__}.{name}")
        else:
            if kind == ENTRY_KIND and isinstance(value, EntryKind):
                value = int(value)
            _check_for_encoding(cls, name, kind, value)
        out.append(value)
    return out


def encode_message(msg: Message) -> bytes:
    """The wire bytes of one Raft message. Raises WireError for an unrepresentable value."""
    if type(msg) is AppendEntries:
        for name, kind in _APPEND_ENTRIES_SCALARS:
            _check_for_encoding(AppendEntries, name, kind, getattr(msg, name))
        return _pack(
            [
                MESSAGE_FORMAT_VERSION,
                TAG_BY_TYPE[AppendEntries],
                msg.term,
                msg.src,
                msg.dst,
                msg.prev_index,
                msg.prev_term,
                _encode_entries(msg),
                msg.commit,
            ],
            "AppendEntries",
        )
    if type(msg) not in MESSAGE_TYPES:
        raise WireError(f"cannot encode {type(msg).__name__}: not a Raft message")
    if type(msg) is AppendEntriesResponse and (problem := _append_response_problem(msg)):
        raise WireError(f"cannot encode AppendEntriesResponse: {problem}")
    return _pack(_fields_for_encoding(msg), type(msg).__name__)


def encode_hard_state(hard_state: HardState) -> bytes:
    return _pack(_fields_for_encoding(hard_state), "HardState")


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    return _pack(_fields_for_encoding(meta), "SnapshotMeta")


def encode_entry(entry: Entry) -> bytes:
    """One log entry on its own, e.g. as a write-ahead log record."""
    if entry.term == 0 or entry.index == 0:
        raise WireError(f"cannot encode {entry}: term and index start at 1")
    return _pack(_fields_for_encoding(entry), "Entry")


# ---------------------------------------------------------------------------------------------
# Decoding


class _RecordReader:
    """Reads one record from bytes, one array header or value at a time.

    Why not one `msgpack.unpackb` call: msgpack allocates an array's slots when it reads the
    array's header, before the elements arrive, so a few bytes of nested headers each
    announcing 65,536 elements would make it allocate gigabytes. Here only the arrays that
    may legitimately be long (the entries, the id lists of a membership) are read header
    first, with their own limits; every other value is read with `_MAX_NESTED_ARRAY_LEN`,
    which bounds what any hostile nesting can allocate to ~1,024 levels x 16 slots."""

    __slots__ = ("_size", "_unpacker")

    def __init__(self, data: bytes, limits: DecodeLimits) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise WireDecodeError(f"expected bytes, got {type(data).__name__}")
        self._size = len(data)
        if self._size > limits.max_message_bytes:
            raise WireDecodeError(
                f"record of {self._size} bytes exceeds the limit of "
                f"{limits.max_message_bytes} bytes"
            )
        if self._size == 0:
            raise WireDecodeError("empty input: no record")
        self._unpacker = msgpack.Unpacker(
            None,
            raw=False,
            use_list=False,  # tuples: cheaper to build than lists
            strict_map_key=True,
            max_buffer_size=self._size,
            max_bin_len=self._size,
            max_str_len=0,  # no field is a str
            max_array_len=_MAX_NESTED_ARRAY_LEN,
            max_map_len=0,  # no field is a map
            max_ext_len=0,  # no field is an ext (this also refuses msgpack timestamps)
        )
        self._unpacker.feed(data)

    def array_header(self, where: str, max_len: int) -> int:
        """The element count of the array that must come next, at most `max_len`."""
        try:
            count: int = self._unpacker.read_array_header()
        except _MSGPACK_ERRORS as exc:
            raise _unpack_error(where, exc, "expected an array") from exc
        if count > max_len:
            raise WireDecodeError(f"{where}: {count} elements exceed the limit of {max_len}")
        return count

    def value(self, where: str) -> Any:
        try:
            return self._unpacker.unpack()
        except _MSGPACK_ERRORS as exc:
            raise _unpack_error(where, exc, "malformed msgpack") from exc

    def values(self, count: int, where: str) -> list[Any]:
        unpack = self._unpacker.unpack
        try:
            return [unpack() for _ in range(count)]
        except _MSGPACK_ERRORS as exc:
            raise _unpack_error(where, exc, "malformed msgpack") from exc

    def finish(self) -> None:
        """Refuses trailing bytes: a record is the whole input."""
        consumed = self._unpacker.tell()
        if consumed != self._size:
            raise WireDecodeError(
                f"trailing bytes after the record: {self._size - consumed} of {self._size}"
            )


# What msgpack raises on bad input: OutOfData, FormatError, StackError and the other
# UnpackExceptions; ValueError for exceeded limits and unexpected headers (UnicodeDecodeError
# is one too); TypeError / OverflowError for values Python cannot represent as asked.
_MSGPACK_ERRORS: Final = (
    msgpack.UnpackException,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)


def _unpack_error(where: str, exc: Exception, problem: str) -> WireDecodeError:
    if isinstance(exc, msgpack.OutOfData):
        return WireDecodeError(f"truncated record: it ends inside {where}")
    return WireDecodeError(f"{where}: {problem} ({type(exc).__name__}: {exc})"[:300])


def _kind_name(value: object) -> str:
    """A short description of a decoded value for error messages (never the value itself:
    it may be huge)."""
    name = type(value).__name__
    if isinstance(value, bool | int):
        return f"{name} {value!r}"[:60]
    if isinstance(value, bytes | str | list | tuple):
        return f"{name} of length {len(value)}"
    return name


def _uint(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise WireDecodeError(f"{where}: expected a non-negative int, got {_kind_name(value)}")
    return value


def _node(value: object, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise WireDecodeError(f"{where}: expected a positive node id, got {_kind_name(value)}")
    return value


def _node_or_zero(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise WireDecodeError(f"{where}: expected a node id or 0, got {_kind_name(value)}")
    return value


def _bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise WireDecodeError(f"{where}: expected a bool, got {_kind_name(value)}")
    return value


def _bytes(value: object, where: str) -> bytes:
    if type(value) is not bytes:
        raise WireDecodeError(f"{where}: expected bytes (msgpack bin), got {_kind_name(value)}")
    return value


def _entry_kind(value: object, where: str) -> EntryKind:
    kind = _ENTRY_KIND_BY_VALUE.get(value) if type(value) is int else None
    if kind is None:
        raise WireDecodeError(f"{where}: expected an EntryKind value, got {_kind_name(value)}")
    return kind


def _read_id_set(reader: _RecordReader, where: str, max_ids: int) -> frozenset[int]:
    ids = reader.values(reader.array_header(where, max_ids), where)
    previous = 0
    for i, node_id in enumerate(ids):
        _node(node_id, f"{where}[{i}]")
        # Strictly ascending: one canonical encoding per set, and no duplicates.
        if node_id <= previous:
            raise WireDecodeError(f"{where}: node ids must be strictly ascending")
        previous = node_id
    return frozenset(ids)


def _read_membership(reader: _RecordReader, where: str, limits: DecodeLimits) -> Membership:
    if reader.array_header(where, _MEMBERSHIP_LEN) != _MEMBERSHIP_LEN:
        raise WireDecodeError(f"{where}: expected [voters, learners, removed]")
    max_ids = limits.max_membership_ids
    voters = _read_id_set(reader, f"{where}.voters", max_ids)
    learners = _read_id_set(reader, f"{where}.learners", max_ids - len(voters))
    removed = _read_id_set(reader, f"{where}.removed", max_ids - len(voters) - len(learners))
    if voters & learners:
        raise WireDecodeError(f"{where}: ids {sorted(voters & learners)} are voter and learner")
    if (voters | learners) & removed:
        raise WireDecodeError(
            f"{where}: removed ids {sorted((voters | learners) & removed)} are still members"
        )
    return Membership(voters, learners, removed)


_Checker = Callable[[object, str], Any]
_SCALAR_CHECKERS: Final[dict[str, _Checker]] = {
    UINT: _uint,
    NODE: _node,
    NODE_OR_ZERO: _node_or_zero,
    BOOL: _bool,
    BYTES: _bytes,
    ENTRY_KIND: _entry_kind,
}


def _decode_entries(raw: list[Any], msg_term: int, prev_index: int, prev_term: int) -> list[Entry]:
    """AppendEntries.entries: the hot loop. One Entry per element and one combined check;
    only a bad entry takes the slow path that works out what exactly is wrong."""
    # Locals, not globals and builtins, inside the loop: 10% of the decode time (measured).
    kinds = _ENTRY_KIND_BY_VALUE
    type_of, int_type, bytes_type, entry_type = type, int, bytes, Entry
    out: list[Entry] = []
    append = out.append
    expected_index = prev_index + 1
    # §5.3: a leader sends its own log in order: indexes contiguous, terms never decreasing
    # and never newer than its own term, and never 0 (the empty log's sentinel).
    last_term = max(prev_term, 1)
    try:
        for t, i, k, d in raw:  # a non-4-sequence raises ValueError/TypeError right here
            if (
                type_of(t) is not int_type
                or type_of(i) is not int_type
                or type_of(d) is not bytes_type
                or i != expected_index
                or t < last_term
                or t > msg_term
                or (kind := kinds.get(k) if type_of(k) is int_type else None) is None
            ):
                break
            append(entry_type(t, i, kind, d))
            expected_index += 1
            last_term = t
        else:
            return out
    except (ValueError, TypeError):
        pass
    bad = raw[expected_index - prev_index - 1]
    raise WireDecodeError(
        f"AppendEntries.entries at index {expected_index}: "
        f"{_entry_problem(bad, expected_index, last_term, msg_term)} (got {_kind_name(bad)})"
    )


def _entry_problem(e: object, expected_index: int, last_term: int, msg_term: int) -> str:
    """Why `e` is not a valid next entry (the slow path of `_decode_entries`)."""
    if type(e) is not tuple or len(e) != _ENTRY_LEN:
        return "expected [term, index, kind, data]"
    t, i, k, d = e
    if type(t) is not int or type(i) is not int or type(k) is not int or type(d) is not bytes:
        return "expected int term, int index, int kind, bytes data"
    if k not in _ENTRY_KIND_BY_VALUE:
        return f"unknown EntryKind {k}"
    if i != expected_index:
        return f"index {i} is not contiguous"
    return f"term {t} out of order (previous term {last_term}, message term {msg_term})"


def _read_record(data: bytes, limits: DecodeLimits, expected: type[Any] | None) -> Any:
    """Decodes one record of type `expected`, or of any message type when it is None."""
    reader = _RecordReader(data, limits)
    count = reader.array_header("record", _MAX_NESTED_ARRAY_LEN)
    if count < _HEADER_LEN:
        raise WireDecodeError(f"record array of {count} elements has no [version, tag]")
    version = reader.value("format version")
    if type(version) is not int:
        raise WireDecodeError(f"format version must be an int, got {_kind_name(version)}")
    tag = reader.value("tag")
    if type(tag) is not int or tag not in TYPE_BY_TAG:
        raise WireDecodeError(f"unknown record tag {_kind_name(tag)}")
    cls = TYPE_BY_TAG[tag]
    if version != VERSION_BY_TYPE[cls]:
        raise WireDecodeError(
            f"unsupported format version {version} for {cls.__name__}"
            f" (this build reads {VERSION_BY_TYPE[cls]})"
        )
    if expected is None and tag not in MESSAGE_TAGS:
        raise WireDecodeError(f"record tag {tag} ({cls.__name__}) is not a message")
    if expected is not None and cls is not expected:
        raise WireDecodeError(f"expected a {expected.__name__} record, got {cls.__name__}")
    fields = FIELDS_BY_TYPE[cls]
    name = cls.__name__
    if count != _HEADER_LEN + len(fields):
        raise WireDecodeError(f"{name}: expected {len(fields)} fields, got {count - _HEADER_LEN}")
    values: list[Any] = []
    for field_name, kind in fields:
        where = f"{name}.{field_name}"
        if kind == ENTRIES:
            raw = reader.values(reader.array_header(where, limits.max_entries_per_message), where)
            # term, src, dst, prev_index, prev_term were checked before (field order).
            values.append(tuple(_decode_entries(raw, values[0], values[3], values[4])))
        elif kind == MEMBERSHIP:
            values.append(_read_membership(reader, where, limits))
        else:
            values.append(_SCALAR_CHECKERS[kind](reader.value(where), where))
    reader.finish()
    return cls(**dict(zip(_NAMES_BY_TYPE[cls], values, strict=True)))


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Message:
    """The Raft message encoded in `data`. Raises WireDecodeError (only) on any bad input."""
    msg: Message = _read_record(data, limits, None)
    if type(msg) is AppendEntries and msg.prev_term > msg.term:
        raise WireDecodeError(
            f"AppendEntries.prev_term {msg.prev_term} exceeds the message term {msg.term}"
        )
    if type(msg) is AppendEntriesResponse and (problem := _append_response_problem(msg)):
        raise WireDecodeError(f"AppendEntriesResponse: {problem}")
    return msg


def _append_response_problem(msg: AppendEntriesResponse) -> str:
    """Why `msg` mixes a success with a rejection, or two kinds of rejection ('' if not)."""
    rejection = (msg.rejected_index, msg.hint_index, msg.hint_term, msg.needs_snapshot)
    if msg.success:
        if any(rejection):
            return "a success carries no rejection fields"
        return ""
    if msg.match_index:
        return "a rejection carries no match_index"
    if msg.needs_snapshot and any(rejection[:3]):
        return "needs_snapshot carries no rejected_index or hint"
    if not msg.rejected_index and (msg.hint_index or msg.hint_term):
        return "a hint needs the rejected_index it answers"
    return ""


def decode_hard_state(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> HardState:
    hard_state: HardState = _read_record(data, limits, HardState)
    return hard_state


def decode_snapshot_meta(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> SnapshotMeta:
    meta: SnapshotMeta = _read_record(data, limits, SnapshotMeta)
    return meta


def decode_entry(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Entry:
    entry: Entry = _read_record(data, limits, Entry)
    if entry.term == 0 or entry.index == 0:
        raise WireDecodeError("Entry: term and index start at 1 (0 is the empty log's sentinel)")
    return entry
