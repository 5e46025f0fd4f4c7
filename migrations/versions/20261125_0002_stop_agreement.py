"""models.stop_agreement: the stopping rule's kappa between a round's model and the previous one.

Nullable: rounds trained before this revision keep what they had and show no agreement.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('stop_agreement', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('stop_agreement')
