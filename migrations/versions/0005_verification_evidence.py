"""broker verification evidence

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sig_verification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('broker_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('document_digest', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('cms_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signer_serial', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
    sa.Column('signer_reference', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('signing_time', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('signing_time_source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('checked_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sig_verification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sig_verification_broker_code'), ['broker_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_sig_verification_document_digest'), ['document_digest'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sig_verification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sig_verification_document_digest'))
        batch_op.drop_index(batch_op.f('ix_sig_verification_broker_code'))

    op.drop_table('sig_verification')
