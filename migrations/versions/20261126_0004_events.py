"""events and disagreements: webhook deliveries stored before they are acted on, and annotator disagreements.

``events``: one row per Label Studio delivery (deduplicated by a key built from the payload), processed by
``activeadv serve``'s worker; ``processed_at`` NULL means not acted on yet.  ``disagreements``: one row per item
whose annotators disagree (votes per class, the rule applied), written by sync.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 18:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_events_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('project_id', 'dedupe_key', name=op.f('uq_events_project_id_dedupe_key'))
    )
    op.create_index(op.f('ix_events_project_id_processed_at'), 'events', ['project_id', 'processed_at'], unique=False)
    op.create_table('disagreements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('votes', sa.JSON(), nullable=False),
    sa.Column('tie', sa.Boolean(), nullable=False),
    sa.Column('rule', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_disagreements_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_disagreements_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disagreements')),
    sa.UniqueConstraint('project_id', 'item_id', name=op.f('uq_disagreements_project_id_item_id'))
    )


def downgrade() -> None:
    op.drop_table('disagreements')
    op.drop_index(op.f('ix_events_project_id_processed_at'), table_name='events')
    op.drop_table('events')
