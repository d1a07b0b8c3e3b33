# Installs bqemulator into its own virtualenv (sourced by .ci/run); tests start it as a subprocess.
BQ_VENV=${BQ_VENV:-/opt/pypi-pulse-bqemulator}
if [ ! -x "$BQ_VENV/bin/python" ] || ! "$BQ_VENV/bin/python" -c "import bqemulator" 2>/dev/null; then
  python3 -m venv "$BQ_VENV"
  "$BQ_VENV/bin/pip" install -q "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" numpy
fi
export PYPI_PULSE_BQEMULATOR_PYTHON="$BQ_VENV/bin/python"
