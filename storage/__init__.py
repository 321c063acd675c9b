"""PostgreSQL: tables, migrations, the engine, and the batched exactly-once writer."""
