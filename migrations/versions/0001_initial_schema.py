"""initial schema: audit log and certificate authority

Revision ID: 0001
Revises: 
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_event',
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('occurred_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entry_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('entry_hash')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_action'), ['action'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The audit chain's head row exists from the start, so appenders never race to create it.
    op.bulk_insert(
        sa.table('audit_head', sa.column('id', sa.Integer), sa.column('last_seq', sa.BigInteger),
                 sa.column('last_hash', sa.String)),
        [{'id': 1, 'last_seq': 0, 'last_hash': '0' * 64}],
    )
    op.create_table('ca_authority',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('parent_name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('key_label', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('key_owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('next_crl_number', sa.BigInteger(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_name'], ['ca_authority.name'], ),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('key_label')
    )
    op.create_table('ca_certificate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
    sa.Column('ca_name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('profile', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('key_label', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('fingerprint_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('not_before', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('not_after', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('revoked_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revocation_reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('invalidity_date', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('issued_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ca_name'], ['ca_authority.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint_sha256'),
    sa.UniqueConstraint('serial_hex')
    )
    with op.batch_alter_table('ca_certificate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ca_certificate_ca_name'), ['ca_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_ca_certificate_key_label'), ['key_label'], unique=False)
        batch_op.create_index(batch_op.f('ix_ca_certificate_profile'), ['profile'], unique=False)
        batch_op.create_index(batch_op.f('ix_ca_certificate_status'), ['status'], unique=False)

    op.create_table('ca_crl',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ca_name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('crl_number', sa.BigInteger(), nullable=False),
    sa.Column('this_update', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_update', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['ca_name'], ['ca_authority.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ca_name', 'crl_number', name='uq_ca_crl_number')
    )
    with op.batch_alter_table('ca_crl', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ca_crl_ca_name'), ['ca_name'], unique=False)

    op.create_table('ca_ocsp_response',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ca_name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('serial_hex', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
    sa.Column('hash_algorithm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('this_update', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_update', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['ca_name'], ['ca_authority.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ca_name', 'serial_hex', 'hash_algorithm', name='uq_ca_ocsp_response')
    )


def downgrade() -> None:
    op.drop_table('ca_ocsp_response')
    with op.batch_alter_table('ca_crl', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ca_crl_ca_name'))

    op.drop_table('ca_crl')
    with op.batch_alter_table('ca_certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ca_certificate_status'))
        batch_op.drop_index(batch_op.f('ix_ca_certificate_profile'))
        batch_op.drop_index(batch_op.f('ix_ca_certificate_key_label'))
        batch_op.drop_index(batch_op.f('ix_ca_certificate_ca_name'))

    op.drop_table('ca_certificate')
    op.drop_table('ca_authority')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_action'))

    op.drop_table('audit_event')
