"""ballot log nodes (proofs in O(log n)); revocations are logged and get a receipt

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The RFC 9162 hashing is pure, fixed by the RFC, and tested against it: the backfill uses the
# same code as the service, so the nodes it writes are the ones appends write.
from voting.merkle import MerkleFrontier

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BATCH = 10_000
_leaf = sa.table('vote_log_leaf', sa.column('meeting_id', sa.Integer()), sa.column('leaf_index', sa.Integer()),
                 sa.column('leaf_hash', sa.LargeBinary()))


def upgrade() -> None:
    node = op.create_table(
        'vote_log_node',
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('node_index', sa.Integer(), nullable=False),
        sa.Column('hash', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
        sa.PrimaryKeyConstraint('meeting_id', 'level', 'node_index'),
    )
    with op.batch_alter_table('vote_revocation') as batch:
        batch.add_column(sa.Column('leaf_index', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('receipt', sa.Text(), nullable=True))
    # Revocations received before this revision were not logged: they keep no leaf and no receipt.
    connection = op.get_bind()
    meetings = connection.execute(sa.select(_leaf.c.meeting_id).distinct().order_by(_leaf.c.meeting_id)).scalars()
    for meeting_id in list(meetings):
        _backfill(connection, node, meeting_id)


def _backfill(connection: sa.Connection, node: sa.Table, meeting_id: int) -> None:
    """Store every perfect subtree (level >= 1) of one meeting's log, reading its leaves in order,
    a batch at a time (memory stays O(batch + log n) whatever the size of the log)."""
    frontier = MerkleFrontier()
    while True:
        rows = connection.execute(
            sa.select(_leaf.c.leaf_index, _leaf.c.leaf_hash).where(_leaf.c.meeting_id == meeting_id)
            .where(_leaf.c.leaf_index >= frontier.size).order_by(_leaf.c.leaf_index).limit(_BATCH)).all()
        nodes = []
        for leaf_index, leaf_hash in rows:
            if leaf_index != frontier.size:
                raise RuntimeError(f"meeting {meeting_id}: the ballot log has no leaf {frontier.size}")
            _, *completed = frontier.append_subtrees(bytes(leaf_hash))
            nodes += [{"meeting_id": meeting_id, "level": subtree.level, "node_index": subtree.index, "hash": root}
                      for subtree, root in completed]
        if nodes:
            connection.execute(node.insert(), nodes)
        if len(rows) < _BATCH:
            return


def downgrade() -> None:
    with op.batch_alter_table('vote_revocation') as batch:
        batch.drop_column('receipt')
        batch.drop_column('leaf_index')
    op.drop_table('vote_log_node')
