"""reservation lines found by state and age, for pruning released ones

A released line (and a release's marker for a reservation that never arrived) only matters
while a late retry of its reservation could still come; `prune-reservations` deletes them
once they are old, and this index finds them without reading the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_reservations_state_updated", "reservations", ["state", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_reservations_state_updated", table_name="reservations")
