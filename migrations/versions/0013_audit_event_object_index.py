"""an index on the audit log by object, for reading what happened to one object

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_event_object", "audit_event", ["object_type", "object_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_event_object", table_name="audit_event")
