"""running totals of each meeting's e-votes, turnout by hour and the frozen tally

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Meetings published before this revision get no row: their tally is recounted from the ballots.
    op.create_table(
        'vote_running_tally',
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('outstanding_shares', sa.String(length=40), nullable=False),
        sa.Column('counts', sa.Text(), nullable=False),
        sa.Column('turnout', sa.Text(), nullable=False),
        sa.Column('frozen_tally', sa.Text(), nullable=True),
        sa.Column('updated_at', core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
        sa.PrimaryKeyConstraint('meeting_id'),
    )


def downgrade() -> None:
    op.drop_table('vote_running_tally')
