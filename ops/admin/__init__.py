"""The admin API and page (`qchem-events admin`): ops/admin/server.py."""
