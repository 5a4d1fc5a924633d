"""signed meeting reports; revocations keep the signer's OCSP response at receipt

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'vote_report',
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('pdf', sa.LargeBinary(), nullable=False),
        sa.Column('pdf_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
        sa.PrimaryKeyConstraint('meeting_id'),
    )
    with op.batch_alter_table('vote_revocation') as batch:
        batch.add_column(sa.Column('revocation_evidence', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vote_revocation') as batch:
        batch.drop_column('revocation_evidence')
    op.drop_table('vote_report')
