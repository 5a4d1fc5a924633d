"""credential key algorithm (EC P-256 or RSA) on enrolments and credentials

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('ra_enrolment', 'ra_credential'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('key_algorithm', sqlmodel.sql.sqltypes.AutoString(length=16),
                                       server_default='EC_P256', nullable=False))


def downgrade() -> None:
    for table in ('ra_credential', 'ra_enrolment'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('key_algorithm')
