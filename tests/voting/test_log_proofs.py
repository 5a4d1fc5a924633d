"""Proofs and past roots from the stored perfect subtrees: equal to the full-tree ones, O(log n) reads."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence

import pytest
from alembic import command
from sqlalchemy import Engine, event, insert, inspect, select
from sqlmodel import Session

from cloudseal.migrate import alembic_config, upgrade
from cloudseal.platform import Platform
from core.db import make_engine, session_scope, utcnow
from core.errors import AppError
from tests.voting.test_ballots import make_meeting
from voting import ballot_log, merkle
from voting.models import Issuer, LogLeaf, LogNode, LogState, Meeting, TreeHead


def entry(n: int) -> bytes:
    return f"entry-{n}".encode()


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(entry(n)) for n in range(count)]


def all_subtrees(hashes: list[bytes]) -> dict[merkle.Subtree, bytes]:
    frontier = merkle.MerkleFrontier()
    roots: dict[merkle.Subtree, bytes] = {}
    for h in hashes:
        roots.update(frontier.append_subtrees(h))
    return roots


def meeting_id_of(platform: Platform, public_id: str) -> int:
    with session_scope(platform.engine) as session:
        return session.execute(select(Meeting.id).where(Meeting.public_id == public_id)).scalar_one()


def append_entries(platform: Platform, meeting: str, count: int) -> int:
    meeting_id = meeting_id_of(platform, meeting)
    with session_scope(platform.engine) as session:
        for n in range(count):
            assert ballot_log.append(session, platform.pki, meeting_id=meeting_id, meeting_public_id=meeting,
                                     entry=entry(n))[0] == n
    return meeting_id


def test_the_frontier_reports_each_completed_subtree_once_with_its_root() -> None:
    hashes = leaves(70)
    roots = all_subtrees(hashes)
    assert len(roots) == 2 * 70 - (70).bit_count()  # one leaf and, on average, one inner node per append
    for subtree, root in roots.items():
        assert root == merkle.root_hash(hashes[subtree.start:subtree.end])
    for size in range(71):
        frontier = merkle.MerkleFrontier.from_leaf_hashes(hashes[:size])
        assert frontier.subtree_roots == tuple(roots[s] for s in merkle.perfect_subtrees(0, size))


def test_a_range_decomposes_into_aligned_perfect_subtrees_largest_first() -> None:
    assert merkle.perfect_subtrees(0, 13) == [merkle.Subtree(3, 0), merkle.Subtree(2, 2), merkle.Subtree(0, 12)]
    assert merkle.perfect_subtrees(8, 15) == [merkle.Subtree(2, 2), merkle.Subtree(1, 6), merkle.Subtree(0, 14)]
    assert merkle.perfect_subtrees(5, 5) == []
    assert merkle.Subtree(2, 2).start == 8 and merkle.Subtree(2, 2).end == 12


@pytest.mark.parametrize("start, end", [(1, 3), (2, 7), (3, 7), (-1, 2), (5, 4)])
def test_a_range_rfc_9162_never_splits_out_is_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(start, end)


def test_proofs_folded_from_perfect_subtrees_equal_the_proofs_over_every_leaf() -> None:
    hashes = leaves(70)
    roots = all_subtrees(hashes)
    for size in range(1, 71):
        assert merkle.range_hashes([(0, size)], roots) == [merkle.root_hash(hashes[:size])]
        for index in range(size):
            ranges = merkle.inclusion_ranges(index, size)
            assert merkle.range_hashes(ranges, roots) == merkle.inclusion_proof(hashes, index, size)
            assert len(merkle.subtrees_of(ranges)) <= 2 * size.bit_length()
        for old_size in range(size + 1):
            ranges = merkle.consistency_ranges(old_size, size)
            assert merkle.range_hashes(ranges, roots) == merkle.consistency_proof(hashes, old_size, size)
            assert len(merkle.subtrees_of(ranges)) <= 2 * size.bit_length()
    assert merkle.range_hashes([(0, 0)], {}) == [merkle.EMPTY_ROOT]


def test_every_proof_from_the_database_equals_the_full_tree_proof_and_verifies(
        platform_on_each_database: Platform) -> None:
    platform = platform_on_each_database
    meeting_id = append_entries(platform, make_meeting(platform, []), 70)
    hashes = leaves(70)
    with session_scope(platform.engine) as session:
        sealed = {size: root for size, root in session.execute(
            select(TreeHead.tree_size, TreeHead.root_hash).where(TreeHead.meeting_id == meeting_id))}
        assert ballot_log.root_at(session, meeting_id, 0) == merkle.EMPTY_ROOT
        for size in range(1, 71):
            root = ballot_log.root_at(session, meeting_id, size)
            assert root == merkle.root_hash(hashes[:size]) == sealed[size]
            for index in range(size):
                proof = ballot_log.inclusion_proof(session, meeting_id, index, size)
                assert proof == merkle.inclusion_proof(hashes, index, size)
                assert merkle.verify_inclusion(hashes[index], index, size, proof, root)
            for old_size in range(size + 1):
                proof = ballot_log.consistency_proof(session, meeting_id, old_size, size)
                assert proof == merkle.consistency_proof(hashes, old_size, size)
                assert merkle.verify_consistency(old_size, size, merkle.root_hash(hashes[:old_size]), root, proof)


def test_proofs_beyond_the_log_are_refused_with_a_stable_code(platform: Platform) -> None:
    meeting = make_meeting(platform, [])
    meeting_id = append_entries(platform, meeting, 5)
    empty_id = meeting_id_of(platform, make_meeting(platform, []))
    refused = []
    with session_scope(platform.engine) as session:
        for call in (lambda: ballot_log.inclusion_proof(session, meeting_id, 0, 6),
                     lambda: ballot_log.inclusion_proof(session, meeting_id, 5, 5),
                     lambda: ballot_log.inclusion_proof(session, meeting_id, -1, 5),
                     lambda: ballot_log.consistency_proof(session, meeting_id, 3, 6),
                     lambda: ballot_log.consistency_proof(session, meeting_id, 4, 3),
                     lambda: ballot_log.root_at(session, meeting_id, 6),
                     lambda: ballot_log.inclusion_proof(session, empty_id, 0, 1)):
            with pytest.raises(AppError) as error:
                call()
            refused.append((error.value.status_code, error.value.code))
        assert ballot_log.root_at(session, empty_id, 0) == merkle.EMPTY_ROOT
    assert set(refused) == {(400, "invalid_proof_request")}


class Statements:
    """Records the SQL an engine runs while ``recording`` is set."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, tuple]] = []
        self.recording = False

    def __call__(self, conn: object, cursor: object, statement: str, parameters: Sequence[object],
                 context: object, executemany: bool) -> None:
        if self.recording and not statement.startswith("BEGIN"):
            self.recorded.append((statement, tuple(parameters)))


@pytest.fixture
def statements(platform: Platform) -> Iterator[Statements]:
    recorder = Statements()
    event.listen(platform.engine, "before_cursor_execute", recorder)
    yield recorder
    event.remove(platform.engine, "before_cursor_execute", recorder)


def store_log(engine: Engine, meeting_id: int, hashes: list[bytes]) -> None:
    """What ``ballot_log.append`` stores for these leaves, in bulk (no seal, no tree heads)."""
    frontier = merkle.MerkleFrontier()
    nodes = []
    for h in hashes:
        nodes += [{"meeting_id": meeting_id, "level": s.level, "node_index": s.index, "hash": root}
                  for s, root in frontier.append_subtrees(h)[1:]]
    with engine.begin() as connection:
        connection.execute(insert(LogLeaf.__table__), [{"meeting_id": meeting_id, "leaf_index": n, "leaf_hash": h}
                                                       for n, h in enumerate(hashes)])
        connection.execute(insert(LogNode.__table__), nodes)
        connection.execute(insert(LogState.__table__).values(
            meeting_id=meeting_id, size=frontier.size, frontier=json.dumps([r.hex() for r in frontier.subtree_roots])))


def test_a_proof_on_a_large_log_reads_a_logarithmic_number_of_rows_by_their_keys(
        platform: Platform, statements: Statements) -> None:
    size = 50_000
    hashes = leaves(size)
    meeting_id = meeting_id_of(platform, make_meeting(platform, []))
    store_log(platform.engine, meeting_id, hashes)
    bound = 2 * size.bit_length()  # perfect subtrees one proof is folded from, at most
    with Session(platform.engine) as session:
        for index in sorted({0, 1, 32_767, 32_768, 49_998, *range(3, size - 1, 4_999)}):
            statements.recorded.clear()
            statements.recording = True
            proof = ballot_log.inclusion_proof(session, meeting_id, index, size)
            consistency = ballot_log.consistency_proof(session, meeting_id, index + 1, size)
            statements.recording = False
            assert proof == merkle.inclusion_proof(hashes, index, size)
            assert consistency == merkle.consistency_proof(hashes, index + 1, size)
            assert len(statements.recorded) <= 4  # per proof: the log's size, then the subtree roots
            asked = sum(len(parameters) for _, parameters in statements.recorded)
            assert asked <= 2 * (1 + 3 * bound)  # per proof: a meeting id, then (meeting id, level, index) each
            for statement, parameters in statements.recorded:  # each row found by its whole key, no range read
                plan = [row[3] for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                               parameters)]
                searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
                assert searches and all(step.endswith(FULL_KEYS) for step in searches), plan


FULL_KEYS = ("(rowid=?)", "(meeting_id=? AND leaf_index=?)", "(meeting_id=? AND level=? AND node_index=?)")


def test_appends_store_each_completed_subtree_once(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ballot_log, "seal", lambda session, pki, statement: (b"\x30\x00", "00"))  # not measured here
    meeting_id = append_entries(platform, make_meeting(platform, []), 300)
    with session_scope(platform.engine) as session:
        stored = {(level, index): root for level, index, root in session.execute(
            select(LogNode.level, LogNode.node_index, LogNode.hash).where(LogNode.meeting_id == meeting_id))}
    assert stored == {(s.level, s.index): root for s, root in all_subtrees(leaves(300)).items() if s.level}


def test_the_migration_backfills_the_nodes_of_existing_logs(database_url: str) -> None:
    upgrade(database_url, "0008")
    engine = make_engine(database_url)
    logs = {1: leaves(20_003), 2: leaves(5), 3: leaves(1), 4: []}  # 20,003: more than two read batches
    with engine.begin() as connection:
        connection.execute(insert(Issuer.__table__).values(code="2330", name="TSMC", created_at=utcnow()))
        for meeting_id in logs:
            now = utcnow()
            connection.execute(insert(Meeting.__table__).values(
                id=meeting_id, public_id=f"{meeting_id:032x}", issuer_code="2330", title="AGM",
                meeting_date=dt.date(2026, 6, 4), book_closure_date=dt.date(2026, 4, 6),
                notice_published_on=dt.date(2026, 5, 1), opens_at=now, closes_at=now, public_company=True,
                status="published", register_holders=0, created_by="test", created_at=now))
    for meeting_id, hashes in logs.items():
        if hashes:
            with engine.begin() as connection:
                connection.execute(insert(LogLeaf.__table__), [
                    {"meeting_id": meeting_id, "leaf_index": n, "leaf_hash": h} for n, h in enumerate(hashes)])
                frontier = merkle.MerkleFrontier.from_leaf_hashes(hashes)
                connection.execute(insert(LogState.__table__).values(
                    meeting_id=meeting_id, size=frontier.size,
                    frontier=json.dumps([r.hex() for r in frontier.subtree_roots])))
    upgrade(database_url)
    with Session(engine) as session:
        for meeting_id, hashes in logs.items():
            stored = {(level, index): root for level, index, root in session.execute(
                select(LogNode.level, LogNode.node_index, LogNode.hash).where(LogNode.meeting_id == meeting_id))}
            assert stored == {(s.level, s.index): root for s, root in all_subtrees(hashes).items() if s.level}
        big = logs[1]
        for index in (0, 8_191, 16_384, 20_002):
            proof = ballot_log.inclusion_proof(session, 1, index, len(big))
            assert merkle.verify_inclusion(big[index], index, len(big), proof, merkle.root_hash(big))
        assert ballot_log.consistency_proof(session, 1, 12_345, 20_003) == merkle.consistency_proof(big, 12_345, 20_003)
        assert ballot_log.root_at(session, 2, 5) == merkle.root_hash(logs[2])
    command.downgrade(alembic_config(database_url), "0008")
    tables = inspect(engine)
    assert "vote_log_node" not in tables.get_table_names()
    assert not {"leaf_index", "receipt"} & {c["name"] for c in tables.get_columns("vote_revocation")}
    engine.dispose()
