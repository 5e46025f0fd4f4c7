"""robustness: each round's robustness suite, one row per (attack, eps).

Rows of ``robustness.evaluate_robustness`` (clean, FGSM from the true and the predicted label, BIM, PGD in L-inf
and L2, iter-LL, transfer from earlier rounds' checkpoints, at each eps of the sweep), written with the round's
model.  Rounds from before this revision keep what they had (clean/FGSM/PGD accuracy in ``models``) and simply
have no suite rows.

Only a new table is created: ``rounds`` (the parent) is not altered, so SQLite never rebuilds it (with foreign keys
on, dropping a rebuilt parent would cascade to its children; see 0003).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 22:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('robustness',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('attack', sa.String(length=32), nullable=False),
    sa.Column('eps', sa.Float(), nullable=False),
    sa.Column('norm', sa.String(length=8), nullable=False),
    sa.Column('radius', sa.Float(), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_robustness_round_id_rounds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_robustness')),
    sa.UniqueConstraint('round_id', 'attack', 'eps', name=op.f('uq_robustness_round_id_attack_eps'))
    )


def downgrade() -> None:
    op.drop_table('robustness')
