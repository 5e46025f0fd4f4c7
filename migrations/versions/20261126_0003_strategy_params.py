"""rounds.strategy_params: a round's strategy is stored as its registry name plus JSON parameters.

Before this revision ``rounds.strategy`` held ``repr(strategy)``, e.g.
``dfal(mode=fast, top_k=10, steps=50, overshoot=0.02, shortlist=0.05, min_shortlist=256, per_pick=5)`` or
``entropy(diversity=kcenter, diversity_factor=10)``, read back with ``ast.literal_eval``.  Each old row is
parsed once, here: the name stays in ``strategy``, the parameters go to ``strategy_params``.  Batch diversity
is a parameter (``diversity``, ``diversity_factor``), never part of the name; a ``NAME+DIVERSITY`` name is
split the same way.  The seed round's ``seed`` stays ``seed`` with ``{}``.  A value that does not parse is left
exactly as it was, with ``{}``: this version then finishes such a round with the strategy it is asked for, as it
did before with an unreadable repr.  The parser below is frozen with this revision (no ``literal_eval``, no
import from ``activeadv``): it reads numbers, ``True`` / ``False`` / ``None``, quoted strings and bare words.

Downgrade writes the repr back (``name(key=value, ...)``, strings unquoted, as the old code wrote them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_rounds = sa.table('rounds', sa.column('id', sa.Integer()), sa.column('strategy', sa.String(200)),
                   sa.column('strategy_params', sa.JSON()))

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_ARG = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,()'"]*?)\s*(,|$)""")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_WORD = {"True": True, "False": False, "None": None}


def _value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text in _WORD:
        return _WORD[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text  # a bare word such as fast or kmeans++


def parse_old(text: str) -> tuple[str, dict[str, Any]] | None:
    """``"dfal+kcenter(mode=fast, top_k=10)"`` -> ``("dfal", {"mode": "fast", "top_k": 10, "diversity": ...})``;
    None when ``text`` is not such a repr."""
    text = text.strip()
    head, paren, rest = text.partition("(")
    name, plus, diversity = head.strip().partition("+")
    if not _NAME.fullmatch(name) or (plus and not re.fullmatch(r"[A-Za-z0-9+-]+", diversity)):
        return None
    params: dict[str, Any] = {}
    if paren:
        if not rest.endswith(")"):
            return None
        body, pos = rest[:-1], 0
        while pos < len(body):
            match = _ARG.match(body, pos)
            if match is None or match.end() == pos:
                return None
            key, raw, _ = match.groups()
            if key in params:
                return None
            params[key] = _value(raw.strip())
            pos = match.end()
    if plus:
        params.setdefault("diversity", diversity)
    if "diversity" in params:
        params.setdefault("diversity_factor", 10)
    return name, params


def _old_text(name: str, params: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in (params or {}).items())
    return f"{name}({args})" if args else name


# SQLite must never rebuild ``rounds`` here (batch mode's copy-and-move): dropping the old table with foreign keys
# on (the Store turns them on) would cascade to every selection and model of every round.  ADD COLUMN with a
# plain string default and, for the downgrade, DROP COLUMN (SQLite 3.35 or later) alter it in place.
def upgrade() -> None:
    with op.batch_alter_table('rounds', recreate='never') as batch:
        batch.add_column(sa.Column('strategy_params', sa.JSON(), server_default='{}', nullable=False))
    conn = op.get_bind()
    for row_id, text in conn.execute(sa.select(_rounds.c.id, _rounds.c.strategy)).all():
        parsed = parse_old(text or "")
        if parsed is None or parsed == (text, {}):
            continue  # a bare name (seed, entropy, ...) is already what this revision stores; the unreadable stay
        name, params = parsed
        conn.execute(_rounds.update().where(_rounds.c.id == row_id).values(strategy=name, strategy_params=params))


def downgrade() -> None:
    conn = op.get_bind()
    for row_id, name, params in conn.execute(
            sa.select(_rounds.c.id, _rounds.c.strategy, _rounds.c.strategy_params)).all():
        if params:
            conn.execute(_rounds.update().where(_rounds.c.id == row_id)
                         .values(strategy=_old_text(name, params)[:200]))
    with op.batch_alter_table('rounds', recreate='never') as batch:
        batch.drop_column('strategy_params')
