# Installs bqemulator into its own virtualenv (sourced by .ci/run); tests start it as a subprocess.
BQ_VENV=${BQ_VENV:-/opt/pypi-pulse-bqemulator}
if [ ! -x "$BQ_VENV/bin/python" ] || ! "$BQ_VENV/bin/python" -c "import bqemulator" 2>/dev/null; then
  python3 -m venv "$BQ_VENV"
  "$BQ_VENV/bin/pip" install -q "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" numpy
fi
# DuckDB would download its spatial extension when the emulator starts: install it from the wheel instead.
"$BQ_VENV/bin/python" - <<'PY'
import pathlib, duckdb, duckdb_extension_spatial
con = duckdb.connect()
try:
    con.execute("LOAD spatial")
except Exception:
    root = pathlib.Path(duckdb_extension_spatial.__file__).parent
    con.execute(f"INSTALL '{next(root.glob(f'extensions/v{duckdb.__version__}/spatial.duckdb_extension'))}'")
PY
export PYPI_PULSE_BQEMULATOR_PYTHON="$BQ_VENV/bin/python"
