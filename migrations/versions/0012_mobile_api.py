"""the mobile API: app sessions (rotating refresh tokens), prepared submissions, the inbox

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        'mobile_refresh_token',
        sa.Column('id', _BIG_ID, nullable=False),
        sa.Column('investor_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', _text(64), nullable=False),
        sa.Column('device_sha256', _text(64), nullable=False),
        sa.Column('family_id', _text(32), nullable=False),
        sa.Column('token_hash', _text(64), nullable=False),
        sa.Column('issued_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('used_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('revoked_at', core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index(op.f('ix_mobile_refresh_token_credential_id'), 'mobile_refresh_token', ['credential_id'])
    op.create_index(op.f('ix_mobile_refresh_token_family_id'), 'mobile_refresh_token', ['family_id'])
    op.create_index(op.f('ix_mobile_refresh_token_investor_id'), 'mobile_refresh_token', ['investor_id'])
    op.create_table(
        'mobile_submission',
        sa.Column('id', _text(32), nullable=False),
        sa.Column('investor_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', _text(64), nullable=False),
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('holder_no', _text(32), nullable=False),
        sa.Column('kind', _text(16), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('payload_sha256', _text(64), nullable=False),
        sa.Column('challenge_id', _text(64), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('used_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('cms_sha256', _text(64), nullable=True),
        sa.Column('receipt', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
        sa.ForeignKeyConstraint(['meeting_id'], ['vote_meeting.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_mobile_submission_investor_id'), 'mobile_submission', ['investor_id'])
    op.create_index(op.f('ix_mobile_submission_meeting_id'), 'mobile_submission', ['meeting_id'])
    op.create_index(op.f('ix_mobile_submission_payload_sha256'), 'mobile_submission', ['payload_sha256'])
    op.create_table(
        'mobile_notification',
        sa.Column('id', _BIG_ID, nullable=False),
        sa.Column('investor_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('kind', _text(32), nullable=False),
        sa.Column('dedupe_key', _text(128), nullable=False),
        sa.Column('meeting_public_id', _text(32), nullable=True),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('occurred_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('investor_id', 'dedupe_key', name='uq_mobile_notification_key'),
        sa.UniqueConstraint('investor_id', 'seq', name='uq_mobile_notification_seq'),
    )
    op.create_table(
        'mobile_inbox_state',
        sa.Column('investor_id', sa.Integer(), nullable=False),
        sa.Column('last_seq', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['investor_id'], ['ra_investor.id'], ),
        sa.PrimaryKeyConstraint('investor_id'),
    )


def downgrade() -> None:
    op.drop_table('mobile_inbox_state')
    op.drop_table('mobile_notification')
    op.drop_index(op.f('ix_mobile_submission_payload_sha256'), table_name='mobile_submission')
    op.drop_index(op.f('ix_mobile_submission_meeting_id'), table_name='mobile_submission')
    op.drop_index(op.f('ix_mobile_submission_investor_id'), table_name='mobile_submission')
    op.drop_table('mobile_submission')
    op.drop_index(op.f('ix_mobile_refresh_token_investor_id'), table_name='mobile_refresh_token')
    op.drop_index(op.f('ix_mobile_refresh_token_family_id'), table_name='mobile_refresh_token')
    op.drop_index(op.f('ix_mobile_refresh_token_credential_id'), table_name='mobile_refresh_token')
    op.drop_table('mobile_refresh_token')
