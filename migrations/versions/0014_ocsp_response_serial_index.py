"""an index on the stored OCSP responses by certificate serial, for a ballot's status evidence

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ca_ocsp_response_serial_hex", "ca_ocsp_response", ["serial_hex"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ca_ocsp_response_serial_hex", table_name="ca_ocsp_response")
