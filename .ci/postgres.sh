# Starts the Debian PostgreSQL cluster and exports PYPI_PULSE_TEST_POSTGRES_URL for the tests (sourced by .ci/run).
PGVER=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | grep -q online; then
  pg_lsclusters -h | grep -q . || pg_createcluster "$PGVER" main >/dev/null
  pg_ctlcluster "$PGVER" main start
fi
for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
su postgres -c "psql -q -c \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='pulse') THEN CREATE ROLE pulse LOGIN SUPERUSER PASSWORD 'pulse'; END IF; END\\\$\\\$;\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='pulse_test'\" | grep -q 1 || createdb -O pulse pulse_test"
export PYPI_PULSE_TEST_POSTGRES_URL="postgresql://pulse:pulse@127.0.0.1:5432/pulse_test"
