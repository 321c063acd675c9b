-- Run once by the postgres image (docker-entrypoint-initdb.d) on an empty data volume, as the
-- POSTGRES_USER (qchem) against POSTGRES_DB (qchem); see docker-compose.kafka.yml.
-- The integration tests use qchem_test (tests/support/services.py, infra/postgres.sh).
-- The schema itself is applied by Alembic migrations, not here.
SELECT 'CREATE DATABASE qchem_test OWNER qchem'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'qchem_test')\gexec
