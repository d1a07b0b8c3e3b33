"""Every server worker serves the dashboard's scripts from its first request on: a browser fetches the page from
one worker, then all of its scripts at once, from any worker, on as many threads."""

from __future__ import annotations

import re
import threading

from pypi_pulse.config import load_settings
from pypi_pulse.dashboard.app import create_app


def test_a_fresh_worker_serves_every_script_to_requests_that_arrive_together(tmp_path):
    page_worker = create_app(load_settings(data_dir=tmp_path))
    with page_worker.server.test_request_context("/"):
        index = page_worker.index()  # what a signed-in browser gets from the worker that renders the page
    scripts = re.findall(r'<script src="([^"]+)"', index)
    assert any("_dash-component-suites" in s for s in scripts), index[:2000]

    fresh_worker = create_app(load_settings(data_dir=tmp_path))  # another process's app: no request yet
    start = threading.Barrier(len(scripts))
    answers: dict[str, int] = {}

    def fetch(url: str) -> None:
        client = fresh_worker.server.test_client()
        start.wait()
        answers[url] = client.get(url).status_code

    threads = [threading.Thread(target=fetch, args=(url,)) for url in scripts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == {url: 200 for url in scripts}
