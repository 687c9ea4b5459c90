"""The dashboard in a real headless browser: Debian's chromium driven by selenium.

The node and hypercorn run in the test's trio loop; the browser is driven
from a worker thread (selenium blocks). Nothing downloads a browser: the
tests use /usr/bin/chromium and /usr/bin/chromedriver (the Debian packages
``chromium`` and ``chromium-driver``, which ``.ci/run`` installs), and are
skipped with that reason when they are missing.

Screenshots are saved under the test's tmp dir, and also in
``$JOBTRIO_ARTIFACTS`` when that is set (``.ci/run`` sets ``artifacts/``).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.sqlite import SqliteBroker, SqliteStore
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, JobStatus
from jobtrio.submission import SubmissionLimits, validate_submission
from tests.test_api import make_node
from tests.test_client import serve_node

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The flags this machine's closed network needs (no background connections, no QUIC).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1100",
)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed "
    "(apt-get install chromium chromium-driver; .ci/run installs them)",
)

T = TypeVar("T")
WAIT = 15.0


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "the browser saved no screenshot"
    assert path.stat().st_size > 10_000  # a rendered page, not an empty image
    artifacts = os.environ.get("JOBTRIO_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    print(f"screenshot: {path}")
    return path


def wait_for(driver: Any, condition: Callable[[Any], T], message: str) -> T:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message)  # type: ignore[no-any-return]


def text_of(driver: Any, selector: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.CSS_SELECTOR, selector).text  # type: ignore[no-any-return]
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def row_status(driver: Any, job_id: str) -> str | None:
    return text_of(driver, f'tr[data-job-id="{job_id}"] td.status')


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


async def test_a_job_completes_live_and_another_is_cancelled_with_the_button(
    driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)

        def scenario() -> Path:
            driver.get(url + "/")
            wait_for(driver, lambda d: text_of(d, "#live") == "live", "the stream to be live")
            assert text_of(driver, "#leader") == "api-node"
            driver.execute_script("window.loadedOnce = 'yes'")
            with httpx.Client(base_url=url) as api:
                quick = api.post(
                    "/api/v1/jobs", json={"type": "sleep", "payload": {"seconds": 0.3}}
                )
                quick_id = quick.json()["id"]
                wait_for(
                    driver,
                    lambda d: row_status(d, quick_id) == "completed",
                    "the submitted job to show completed without a reload",
                )
                # the same page: nothing reloaded it
                assert driver.execute_script("return window.loadedOnce") == "yes"
                later = api.post(
                    "/api/v1/jobs", json={"type": "noop", "scheduled_at": time.time() + 3600}
                )
                assert later.status_code == 201, later.text
                later_id = later.json()["id"]
                wait_for(driver, lambda d: row_status(d, later_id) == "scheduled", "the new row")
                driver.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{later_id}"]').click()
                wait_for(driver, lambda d: text_of(d, "#detail-id") == later_id, "the detail")
                button = driver.find_element(By.ID, "cancel")
                assert button.is_displayed() and button.is_enabled()
                button.click()
                wait_for(
                    driver, lambda d: row_status(d, later_id) == "cancelled", "the cancelled row"
                )
                wait_for(
                    driver, lambda d: text_of(d, "#detail-status") == "cancelled", "the detail"
                )
                assert api.get(f"/api/v1/jobs/{later_id}").json()["status"] == "cancelled"
                # the detail of the completed job shows its attempt
                driver.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{quick_id}"]').click()
                wait_for(driver, lambda d: text_of(d, "#detail-id") == quick_id, "the detail")
                wait_for(
                    driver, lambda d: "completed" in (text_of(d, "#attempts") or ""), "attempt"
                )
            return screenshot(driver, tmp_path, "dashboard.png")

        path = await in_thread(scenario)
        assert path.exists()
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


# -- login, with the real JWT authentication (AUTH_ENABLED=true) ---------------------------

PASSWORDS = {"wes": "worker-password", "uma": "user-password", "ada": "admin-password"}


def users_file(tmp_path: Path) -> Path:
    import argon2

    from jobtrio.users import Role, Users

    path = tmp_path / "users.json"
    users = Users.open_or_create(path, argon2.PasswordHasher(time_cost=1, memory_cost=64))
    for name, role in (("wes", Role.WORKER), ("uma", Role.USER), ("ada", Role.ADMIN)):
        users.add(name, role, PASSWORDS[name])
    users.save()
    return path


async def serve_with_login(nursery: trio.Nursery, node: Node) -> str:
    from hypercorn.trio import serve as hypercorn_serve

    from jobtrio.api.app import create_app
    from jobtrio.server import hypercorn_config
    from tests.servers import free_port

    app = create_app(node)  # AUTH_ENABLED=true in the node's settings: the JWT authorizer
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    await nursery.start(node.run)
    await nursery.start(functools.partial(hypercorn_serve, app, config))
    return f"http://127.0.0.1:{port}"


async def test_login_form_and_what_a_role_may_do(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    node = make_node(auth_enabled=True, jwt_secret="d" * 32, users_file=str(users_file(tmp_path)))
    async with trio.open_nursery() as nursery:
        url = await serve_with_login(nursery, node)
        # uma's job; ada's is not hers, so her page must not list it
        job = await node.submit({"type": "noop", "scheduled_at": time.time() + 3600}, owner="uma")
        other = await node.submit({"type": "noop", "scheduled_at": time.time() + 3600}, owner="ada")

        def login(d: Any, user: str, password: str) -> None:
            for field, value in (("login-user", user), ("login-password", password)):
                d.find_element(By.ID, field).clear()
                d.find_element(By.ID, field).send_keys(value)
            d.find_element(By.ID, "login-submit").click()

        def scenario() -> None:
            d = driver
            d.get(url + "/")
            d.execute_script("sessionStorage.clear()")
            d.get(url + "/")
            wait_for(d, lambda d: d.find_element(By.ID, "login").is_displayed(), "the login")
            assert not d.find_element(By.ID, "main").is_displayed()
            login(d, "wes", "wrong-password")
            wait_for(
                d,
                lambda d: text_of(d, "#login-error") == "wrong user name or password",
                "refusal",
            )
            login(d, "wes", PASSWORDS["wes"])
            wait_for(d, lambda d: text_of(d, "#live") == "live", "the stream with the token")
            assert text_of(d, "#who") == "role: worker"
            wait_for(d, lambda d: row_status(d, job.id) == "scheduled", "the job's row")
            d.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job.id}"]').click()
            wait_for(d, lambda d: text_of(d, "#detail-id") == job.id, "the detail")
            assert not d.find_element(By.ID, "cancel").is_displayed()
            assert not d.find_element(By.ID, "retry").is_displayed()
            d.find_element(By.ID, "logout").click()
            wait_for(d, lambda d: d.find_element(By.ID, "login").is_displayed(), "login again")
            # the worker's page listed every job: none of it stays for the next login to see
            assert not d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job-id]")
            assert "hidden" in d.find_element(By.ID, "detail").get_attribute("class").split()
            assert d.find_element(By.ID, "detail-id").get_attribute("textContent") == ""
            login(d, "uma", PASSWORDS["uma"])
            wait_for(d, lambda d: text_of(d, "#who") == "role: user", "the user's page")
            wait_for(d, lambda d: text_of(d, "#live") == "live", "the stream again")
            wait_for(d, lambda d: row_status(d, job.id) == "scheduled", "the user's own job")
            assert not d.find_elements(By.CSS_SELECTOR, f'tr[data-job-id="{other.id}"]')
            d.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job.id}"]').click()
            wait_for(d, lambda d: d.find_element(By.ID, "cancel").is_displayed(), "cancel")
            d.find_element(By.ID, "cancel").click()
            wait_for(d, lambda d: row_status(d, job.id) == "cancelled", "the cancelled row")
            assert "admins only" in text_of(d, "#members")  # the cluster view is the admin's
            screenshot(d, tmp_path, "dashboard-login.png")
            d.find_element(By.ID, "logout").click()
            wait_for(d, lambda d: d.find_element(By.ID, "login").is_displayed(), "login again")
            login(d, "ada", PASSWORDS["ada"])
            wait_for(d, lambda d: text_of(d, "#who") == "role: admin", "the admin's page")
            wait_for(
                d,
                lambda d: d.find_elements(By.CSS_SELECTOR, '#members tr[data-node-id="api-node"]'),
                "the members, for the admin",
            )

        await in_thread(scenario)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


# -- 100,000 jobs ---------------------------------------------------------------------------


async def test_it_stays_usable_with_100000_jobs(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = str(tmp_path / "big.db")
    store = await SqliteStore.open(path)
    ids, limits, now = IdGenerator(), SubmissionLimits(1 << 20, 3), time.time()
    jobs = []
    for i in range(100_000):
        job = validate_submission({"type": f"t{i % 7}"}, now, limits, ids)
        job.status = JobStatus.COMPLETED
        jobs.append(job)
    for start in range(0, len(jobs), 10_000):
        await store.put_many(jobs[start : start + 10_000])
    settings = Settings(node_id="big", worker_count=2, shutdown_grace=0.2)
    node = Node(settings, await SqliteBroker.open(path), store)
    newest = jobs[-1].id
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)

        def scenario() -> tuple[float, float]:
            started = time.monotonic()
            driver.get(url + "/")
            wait_for(d := driver, lambda d: row_status(d, newest) == "completed", "page 1")
            first = time.monotonic() - started
            assert len(d.find_elements(By.CSS_SELECTOR, "#jobs tr")) == 50
            started = time.monotonic()
            d.find_element(By.ID, "next").click()
            wait_for(d, lambda d: text_of(d, "#page") == "page 2", "page 2")
            wait_for(d, lambda d: row_status(d, newest) is None, "page 2's rows")
            second = time.monotonic() - started
            rows = d.find_elements(By.CSS_SELECTOR, "#jobs tr")
            assert len(rows) == 50
            assert rows[0].get_attribute("data-job-id") == jobs[-51].id
            d.find_element(By.ID, "filter-type").send_keys("t3")
            d.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
            wait_for(d, lambda d: text_of(d, "#page") == "page 1", "the filtered page")
            wait_for(
                d,
                lambda d: (
                    {e.text for e in d.find_elements(By.CSS_SELECTOR, "#jobs td.type")} == {"t3"}
                ),
                "only t3 jobs",
            )
            screenshot(d, tmp_path, "dashboard-100k.png")
            return first, second

        first, second = await in_thread(scenario)
        print(f"100,000 jobs: first page shown in {first:.2f}s, the next in {second:.2f}s")
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
    await node.broker.close()
    await store.close()


async def test_the_queues_card_shows_pending_work_no_worker_can_take(
    driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)

        def scenario() -> Path:
            with httpx.Client(base_url=url) as api:
                assert api.post("/api/v1/jobs", json={"type": "resize", "queue": "img"}).is_success
            driver.get(url + "/")
            wait_for(
                driver,
                lambda d: text_of(d, "#unserved li") == "1 in img: no worker for type resize",
                "the unserved job to show",
            )
            row = driver.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="img"]')
            assert row.text.split() == ["img", "1", "running"]
            return screenshot(driver, tmp_path, "dashboard-queues.png")

        await in_thread(scenario)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_progress_and_waiting_jobs_show_live(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from jobtrio.backends.memory import MemoryBroker, MemoryStore
    from jobtrio.processors import JobContext, Registry

    registry = Registry()

    @registry.processor("resize")
    async def resize(ctx: JobContext) -> None:
        await ctx.progress(0.4, "resized 4/10")
        await trio.sleep(3600)

    settings = Settings(node_id="api-node", worker_count=2, shutdown_grace=0.2)
    node = Node(settings, MemoryBroker(), MemoryStore(), registry)
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)

        def scenario() -> Path:
            driver.get(url + "/")
            wait_for(driver, lambda d: text_of(d, "#live") == "live", "the stream to be live")
            with httpx.Client(base_url=url) as api:
                first = api.post("/api/v1/jobs", json={"type": "resize"}).json()["id"]
                second = api.post(
                    "/api/v1/jobs", json={"type": "noop", "depends_on": [first]}
                ).json()["id"]
                wait_for(
                    driver,
                    lambda d: row_status(d, first) == "running 40% resized 4/10",
                    "the running row with its progress, live",
                )
                wait_for(driver, lambda d: row_status(d, second) == "waiting", "the waiting row")
                driver.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{first}"]').click()
                wait_for(
                    driver,
                    lambda d: text_of(d, "#detail-progress") == "40% resized 4/10",
                    "the detail's progress",
                )
                shot = screenshot(driver, tmp_path, "dashboard-progress.png")
                assert api.delete(f"/api/v1/jobs/{first}").status_code == 200
                wait_for(driver, lambda d: row_status(d, second) == "failed", "the released row")
            return shot

        try:
            await in_thread(scenario)
        finally:
            node.request_stop()
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
