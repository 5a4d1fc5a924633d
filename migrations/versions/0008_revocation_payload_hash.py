"""revocations remember their payload's hash (a replayed revocation is refused)

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vote_revocation') as batch:
        batch.add_column(sa.Column('payload_sha256', sqlmodel.sql.sqltypes.AutoString(length=64),
                                   server_default='', nullable=False))
        batch.create_index(batch.f('ix_vote_revocation_payload_sha256'), ['payload_sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('vote_revocation') as batch:
        batch.drop_index(batch.f('ix_vote_revocation_payload_sha256'))
        batch.drop_column('payload_sha256')
