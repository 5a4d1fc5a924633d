"""voting: issuers, meetings, agenda, register, ballots, ballot log

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('vote_issuer',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('vote_meeting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('issuer_code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('meeting_date', sa.Date(), nullable=False),
    sa.Column('book_closure_date', sa.Date(), nullable=False),
    sa.Column('notice_published_on', sa.Date(), nullable=False),
    sa.Column('opens_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closes_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('public_company', sa.Boolean(), nullable=False),
    sa.Column('thresholds', sa.Text(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('register_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('register_holders', sa.Integer(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('frozen_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['issuer_code'], ['vote_issuer.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id')
    )
    with op.batch_alter_table('vote_meeting', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_meeting_issuer_code'), ['issuer_code'], unique=False)

    op.create_table('vote_agenda_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('item_key', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('article', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('candidates', sa.Text(), nullable=False),
    sa.Column('added_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('added_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'item_key', name='uq_vote_agenda_item')
    )
    with op.batch_alter_table('vote_agenda_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_agenda_item_meeting_id'), ['meeting_id'], unique=False)

    op.create_table('vote_holder',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('holder_no', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('id_hmac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('shares', sa.String(length=40), nullable=False),
    sa.Column('non_voting_shares', sa.String(length=40), nullable=False),
    sa.Column('non_voting_reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('nominee', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'holder_no', name='uq_vote_holder')
    )
    with op.batch_alter_table('vote_holder', schema=None) as batch_op:
        batch_op.create_index('ix_vote_holder_identity', ['id_hmac', 'meeting_id'], unique=False)

    op.create_table('vote_log_leaf',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('leaf_index', sa.Integer(), nullable=False),
    sa.Column('leaf_hash', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'leaf_index', name='uq_vote_log_leaf')
    )
    op.create_table('vote_log_state',
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('frontier', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('meeting_id')
    )
    op.create_table('vote_tree_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('tree_size', sa.Integer(), nullable=False),
    sa.Column('root_hash', sa.LargeBinary(), nullable=False),
    sa.Column('issued_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'tree_size', name='uq_vote_tree_head')
    )
    with op.batch_alter_table('vote_tree_head', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_tree_head_meeting_id'), ['meeting_id'], unique=False)

    op.create_table('vote_attendance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('holder_id', sa.Integer(), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('proxy_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('choices', sa.Text(), nullable=False),
    sa.Column('entered_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entered_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['holder_id'], ['vote_holder.id'], ),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'holder_id', name='uq_vote_attendance')
    )
    with op.batch_alter_table('vote_attendance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_attendance_meeting_id'), ['meeting_id'], unique=False)

    op.create_table('vote_ballot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('holder_id', sa.Integer(), nullable=False),
    sa.Column('ballot_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('cms', sa.LargeBinary(), nullable=False),
    sa.Column('signer_serial', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
    sa.Column('investor_reference', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('received_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('item_status', sa.Text(), nullable=False),
    sa.Column('leaf_index', sa.Integer(), nullable=False),
    sa.Column('revocation_evidence', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['holder_id'], ['vote_holder.id'], ),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meeting_id', 'ballot_sha256', name='uq_vote_ballot_hash')
    )
    with op.batch_alter_table('vote_ballot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_ballot_holder_id'), ['holder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_ballot_meeting_id'), ['meeting_id'], unique=False)
        batch_op.create_index('uq_vote_counted_ballot', ['meeting_id', 'holder_id'], unique=True, sqlite_where=sa.text("status = 'counted'"), postgresql_where=sa.text("status = 'counted'"))

    op.create_table('vote_recusal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('holder_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entered_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.ForeignKeyConstraint(['holder_id'], ['vote_holder.id'], ),
    sa.ForeignKeyConstraint(['item_id'], ['vote_agenda_item.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'holder_id', name='uq_vote_recusal')
    )
    with op.batch_alter_table('vote_recusal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_recusal_item_id'), ['item_id'], unique=False)

    op.create_table('vote_revocation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('holder_id', sa.Integer(), nullable=False),
    sa.Column('ballot_id', sa.Integer(), nullable=False),
    sa.Column('received_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('cms', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['ballot_id'], ['vote_ballot.id'], ),
    sa.ForeignKeyConstraint(['holder_id'], ['vote_holder.id'], ),
    sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('vote_revocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_revocation_holder_id'), ['holder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vote_revocation_meeting_id'), ['meeting_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('vote_revocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_revocation_meeting_id'))
        batch_op.drop_index(batch_op.f('ix_vote_revocation_holder_id'))

    op.drop_table('vote_revocation')
    with op.batch_alter_table('vote_recusal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_recusal_item_id'))

    op.drop_table('vote_recusal')
    with op.batch_alter_table('vote_ballot', schema=None) as batch_op:
        batch_op.drop_index('uq_vote_counted_ballot', sqlite_where=sa.text("status = 'counted'"), postgresql_where=sa.text("status = 'counted'"))
        batch_op.drop_index(batch_op.f('ix_vote_ballot_meeting_id'))
        batch_op.drop_index(batch_op.f('ix_vote_ballot_holder_id'))

    op.drop_table('vote_ballot')
    with op.batch_alter_table('vote_attendance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_attendance_meeting_id'))

    op.drop_table('vote_attendance')
    with op.batch_alter_table('vote_tree_head', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_tree_head_meeting_id'))

    op.drop_table('vote_tree_head')
    op.drop_table('vote_log_state')
    op.drop_table('vote_log_leaf')
    with op.batch_alter_table('vote_holder', schema=None) as batch_op:
        batch_op.drop_index('ix_vote_holder_identity')

    op.drop_table('vote_holder')
    with op.batch_alter_table('vote_agenda_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_agenda_item_meeting_id'))

    op.drop_table('vote_agenda_item')
    with op.batch_alter_table('vote_meeting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_meeting_issuer_code'))

    op.drop_table('vote_meeting')
    op.drop_table('vote_issuer')

