"""The live page in headless Chromium: node states change and log lines arrive during a run."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest
from django.test import Client
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from accounts.models import User
from executions.models import ExecutionLog
from executions.services import execution_start
from tests.executions.conftest import EngineProcesses, make_graph, make_workflow, wait_finished
from tests.live.conftest import make_execution
from tests.live.conftest import make_workflow as make_live_workflow
from tests.servers import ServerUrl

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

BROWSER_GRAPH = make_graph(
    [
        {"id": "hello", "type": "debug", "params": {"message": "hello"}},
        {"id": "pause", "type": "delay", "params": {"seconds": 3}},
        {"id": "left", "type": "debug", "params": {"message": "left"}},
        {"id": "right", "type": "debug", "params": {"message": "right", "level": "warning"}},
    ],
    [("t", "hello"), ("hello", "pause"), ("pause", "left"), ("pause", "right")],
)

NODE_STATES_JS = (
    "return Array.from(document.querySelectorAll('#graph .node'))"
    ".map(function (n) { return [n.getAttribute('data-node-id'), n.getAttribute('data-state')]; });"
)
LOG_COUNT_JS = "return document.querySelectorAll('#log .log-line').length;"
STATUS_JS = "return document.getElementById('execution-status').getAttribute('data-status');"
FINISHED_JS = "return document.getElementById('execution-finished').textContent;"
NODE_TEXT_JS = "return document.querySelector('#graph .node[data-node-id=\"pause\"]').textContent;"


def sign_in(browser: webdriver.Chrome, base_url: str, user: User) -> None:
    """Give the browser a Django session, as the admin login would."""
    client = Client()
    client.force_login(user)
    browser.get(f"{base_url}/health")
    session = client.cookies["sessionid"].value
    browser.add_cookie({"name": "sessionid", "value": session, "path": "/"})


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver installed")
    # Selenium must never go looking for a driver on the network.
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_live_page_shows_node_states_changing_and_log_lines_arriving(
    daphne_url: ServerUrl,
    running_engine: EngineProcesses,
    browser: webdriver.Chrome,
    owner: User,
) -> None:
    # given: a signed-in browser (the Django session, as after the admin login)
    client = Client()
    client.force_login(owner)
    browser.get(f"{daphne_url}/health")
    browser.add_cookie(
        {"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"}
    )
    workflow = make_workflow(owner, BROWSER_GRAPH)

    # when: a run starts and its live page is opened while it runs
    execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=owner)
    browser.get(f"{daphne_url}/executions/{execution.pk}/live")

    # then: the page follows the run to its end
    history: dict[str, list[str]] = {}
    log_counts: list[int] = []
    deadline = time.monotonic() + 45
    final_lines = None
    while time.monotonic() < deadline:
        for node_id, state in browser.execute_script(NODE_STATES_JS):
            states = history.setdefault(node_id, [])
            if not states or states[-1] != state:
                states.append(state)
        log_counts.append(browser.execute_script(LOG_COUNT_JS))
        if browser.execute_script(STATUS_JS) == "succeeded":
            if final_lines is None:
                wait_finished(execution.pk)
                final_lines = ExecutionLog.objects.filter(execution=execution).count()
            done = all(states[-1] == "succeeded" for states in history.values())
            # The header's timings come from the state refresh that follows `complete`.
            refreshed = browser.execute_script(FINISHED_JS) != "—"
            if done and refreshed and log_counts[-1] == final_lines:
                break
        time.sleep(0.1)
    else:
        raise AssertionError(f"page did not finish: states={history} logs={log_counts[-5:]}")

    assert set(history) == {"t", "hello", "pause", "left", "right"}
    # Nodes after the delay were drawn before they ran, then turned green live.
    assert history["left"][0] == "pending"
    assert history["left"][-1] == "succeeded"
    assert history["right"][-1] == "succeeded"
    assert "waiting" in history["pause"] or "running" in history["pause"]
    pause_text = browser.execute_script(NODE_TEXT_JS)
    assert "delay · succeeded" in pause_text
    assert "1 attempt" in pause_text
    # Lines arrived over the socket after the page loaded, not only in the first paint.
    assert log_counts[0] < log_counts[-1] == final_lines
    seqs = browser.execute_script(
        "return Array.from(document.querySelectorAll('#log .log-line'))"
        ".map(function (row) { return Number(row.getAttribute('data-seq')); });"
    )
    assert seqs == list(range(1, final_lines + 1))
    assert browser.execute_script("return window.autoflowLive.complete();") is True
    # No script or socket was refused by the Content-Security-Policy.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line], console
    assert not [line for line in console if "SEVERE" in line.upper() and "live.js" in line], console


def test_live_page_of_another_users_execution_is_404_in_the_browser(
    daphne_url: ServerUrl, browser: webdriver.Chrome, owner: User, outsider: User
) -> None:
    execution = make_execution(make_live_workflow(owner))
    client = Client()
    client.force_login(outsider)
    browser.get(f"{daphne_url}/health")
    browser.add_cookie(
        {"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"}
    )

    browser.get(f"{daphne_url}/executions/{execution.pk}/live")

    assert browser.find_elements("id", "graph") == []
    assert "Not Found" in browser.page_source or "404" in browser.page_source
