"""registration authority

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ra_app_challenge',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('credential_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ra_app_challenge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ra_app_challenge_credential_id'), ['credential_id'], unique=False)

    op.create_table('ra_broker',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('dual_control', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('ra_investor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('id_kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('id_hmac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id_masked', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('contact_channel', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('id_hmac'),
    sa.UniqueConstraint('reference')
    )
    op.create_table('ra_broker_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('investor_id', sa.Integer(), nullable=False),
    sa.Column('broker_code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('account_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('linked_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['broker_code'], ['ra_broker.code'], ),
    sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('broker_code', 'account_number', name='uq_ra_account')
    )
    with op.batch_alter_table('ra_broker_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ra_broker_account_broker_code'), ['broker_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_ra_broker_account_investor_id'), ['investor_id'], unique=False)

    op.create_table('ra_credential',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('investor_id', sa.Integer(), nullable=False),
    sa.Column('current', sa.Integer(), nullable=True),
    sa.Column('key_label', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('certificate_serial', sqlmodel.sql.sqltypes.AutoString(length=42), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('device_public_key', sa.LargeBinary(), nullable=False),
    sa.Column('device_registered_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('pin_salt', sa.LargeBinary(), nullable=False),
    sa.Column('pin_hmac', sa.LargeBinary(), nullable=False),
    sa.Column('pin_failures', sa.Integer(), nullable=False),
    sa.Column('locked_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('credential_id'),
    sa.UniqueConstraint('investor_id', 'current', name='uq_ra_current_credential')
    )
    with op.batch_alter_table('ra_credential', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ra_credential_certificate_serial'), ['certificate_serial'], unique=False)
        batch_op.create_index(batch_op.f('ix_ra_credential_investor_id'), ['investor_id'], unique=False)

    op.create_table('ra_enrolment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('investor_id', sa.Integer(), nullable=True),
    sa.Column('broker_code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('id_kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('id_hmac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('id_masked', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('contact_channel', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('accounts', sa.Text(), nullable=False),
    sa.Column('proofing', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('submitted_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('submitted_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('approved_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['broker_code'], ['ra_broker.code'], ),
    sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ra_enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ra_enrolment_broker_code'), ['broker_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_ra_enrolment_id_hmac'), ['id_hmac'], unique=False)
        batch_op.create_index(batch_op.f('ix_ra_enrolment_investor_id'), ['investor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ra_enrolment_status'), ['status'], unique=False)

    op.create_table('ra_activation_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('expires_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['ra_enrolment.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrolment_id'),
    sa.UniqueConstraint('public_id')
    )
    op.create_table('ra_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=True),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['ra_enrolment.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ra_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ra_outbox_enrolment_id'), ['enrolment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ra_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ra_outbox_enrolment_id'))

    op.drop_table('ra_outbox')
    op.drop_table('ra_activation_code')
    with op.batch_alter_table('ra_enrolment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ra_enrolment_status'))
        batch_op.drop_index(batch_op.f('ix_ra_enrolment_investor_id'))
        batch_op.drop_index(batch_op.f('ix_ra_enrolment_id_hmac'))
        batch_op.drop_index(batch_op.f('ix_ra_enrolment_broker_code'))

    op.drop_table('ra_enrolment')
    with op.batch_alter_table('ra_credential', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ra_credential_investor_id'))
        batch_op.drop_index(batch_op.f('ix_ra_credential_certificate_serial'))

    op.drop_table('ra_credential')
    with op.batch_alter_table('ra_broker_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ra_broker_account_investor_id'))
        batch_op.drop_index(batch_op.f('ix_ra_broker_account_broker_code'))

    op.drop_table('ra_broker_account')
    op.drop_table('ra_investor')
    op.drop_table('ra_broker')
    with op.batch_alter_table('ra_app_challenge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ra_app_challenge_credential_id'))

    op.drop_table('ra_app_challenge')
