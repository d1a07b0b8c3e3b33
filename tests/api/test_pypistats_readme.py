"""The README's pypistats example, run as written against a real `pypi-pulse serve --public-api` over known data:
the documented way to point the `pypistats` client at pypi-pulse stays true."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))

from dashboard_testing import N_DAYS, daily_count  # noqa: E402
from web_faults_testing import Serve, prepare_data_dir  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8050/api/"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- pypistats example -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its pypistats example"
    return match.group(1)


def test_the_readmes_pypistats_example_reads_a_public_api(tmp_path):
    code = _example()
    assert DOCUMENTED_URL in code
    sink = prepare_data_dir(tmp_path)
    serve = Serve(tmp_path, sink, args=("--public-api",))
    try:
        out = subprocess.run(
            [sys.executable, "-c", code.replace(DOCUMENTED_URL, serve.url + "/api/")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )  # never a stale cache
    finally:
        serve.stop()
    assert out.returncode == 0, out.stderr
    printed = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    n = [daily_count("numpy", i) for i in range(N_DAYS)]
    assert printed == {"3.12": sum(x * 2 // 3 for x in n), "3.11": sum(x - x * 2 // 3 for x in n)}
