"""effect claims (one outside effect per event id) and the replay signing key

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 08:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "effect_claims",
        sa.Column("consumer_group", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("origin_topic", sa.String(length=250), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "event_id"),
    )
    op.create_index("ix_effect_claims_claimed_until", "effect_claims", ["claimed_until"])
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("app_secrets")
    op.drop_index("ix_effect_claims_claimed_until", table_name="effect_claims")
    op.drop_table("effect_claims")
