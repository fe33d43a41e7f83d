"""RaftNode: the Raft algorithm as a pure state machine (to be implemented; see the API).

API CONTRACT (shared by raftsched/sim, raftsched/server and the tests; keep it stable):

    node = RaftNode(config: RaftConfig, storage: Storage, rng: random.Random)
    node.tick() -> None                      # one logical clock tick
    node.step(msg: Message) -> None          # an incoming message (any term, any sender)
    node.propose(data: bytes) -> tuple[int, int]
        # leader only: appends a NORMAL entry, returns (index, term). The command is
        # committed iff the entry applied at that index has that term.
        # raises NotLeaderError / ProposalDroppedError
    node.propose_batch(datas: Sequence[bytes]) -> tuple[int, int]
        # many entries at once, returns (first_index, term); indexes are consecutive
    node.propose_conf_change(change: ConfChange) -> tuple[int, int]
        # raises NotLeaderError / MembershipChangeError
    node.read_index(context: int) -> None
        # request a linearizable read; a ReadState(context, index) appears in a later Ready.
        # On a follower it is forwarded to the leader. Raises NotLeaderError when no leader
        # is known. Contexts are chosen by the caller and must be positive and unique.
    node.transfer_leadership(to: NodeId) -> None   # raises NotLeaderError / TransferError
    node.campaign() -> None                  # start an election now (tests, bootstrap)
    node.has_ready() -> bool
    node.ready() -> Ready                    # see ready.py for the ordering rules
    node.advance(rd: Ready) -> None          # the runtime finished everything in rd
    node.status() -> Status
    node.snapshot_taken(index: int) -> None  # app stored a snapshot at `index` via storage;
                                             # the core may now send it to slow followers

Overridable hooks (raftsched/sim/bugs.py subclasses RaftNode to seed bugs; the product never
does). Each is a small method so a bug is a one-method override:
    _log_up_to_date(last_index, last_term) -> bool      # §5.4.1 vote restriction
    _commit_term_ok(index) -> bool                      # §5.4.2: only current-term entries
                                                        #   are committed by counting
    _confirm_read(context, index, requester) -> None    # §6.4: heartbeat round before reads
"""
