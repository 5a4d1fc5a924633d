"""Imports every context's tables so ``SQLModel.metadata`` is complete (Alembic, drift test)."""

from sqlmodel import SQLModel

import ca.models  # noqa: F401
import core.models  # noqa: F401
import mobile_api.models  # noqa: F401
import ra.models  # noqa: F401
import signing.models  # noqa: F401
import voting.models  # noqa: F401

metadata = SQLModel.metadata
