"""signing authorisations, signature log, authenticators

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sig_authorization',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sad_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('credential_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash_algorithm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('hashes', sa.Text(), nullable=False),
    sa.Column('num_signatures', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sad_hash')
    )
    with op.batch_alter_table('sig_authorization', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sig_authorization_credential_id'), ['credential_id'], unique=False)

    op.create_table('sig_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('certificate_serial', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
    sa.Column('digest_hex', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('hash_algorithm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sign_algorithm', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('signed_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sig_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sig_log_certificate_serial'), ['certificate_serial'], unique=False)
        batch_op.create_index(batch_op.f('ix_sig_log_credential_id'), ['credential_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sig_log_digest_hex'), ['digest_hex'], unique=False)

    op.create_table('sig_totp',
    sa.Column('credential_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('salt', sa.LargeBinary(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('credential_id')
    )


def downgrade() -> None:
    op.drop_table('sig_totp')
    with op.batch_alter_table('sig_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sig_log_digest_hex'))
        batch_op.drop_index(batch_op.f('ix_sig_log_credential_id'))
        batch_op.drop_index(batch_op.f('ix_sig_log_certificate_serial'))

    op.drop_table('sig_log')
    with op.batch_alter_table('sig_authorization', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sig_authorization_credential_id'))

    op.drop_table('sig_authorization')
