"""The one `MetaData` every table of the application is declared on.

Its own module so that the table modules (models.py, dlq_tables.py, dlq_index.py) need not
import each other to share it; storage/tables.py gathers them all (migrations, tests).
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
