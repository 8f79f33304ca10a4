"""The campaign page in a real browser: headless Chromium (Debian's package) driven by Playwright
against a real ``airflow api-server`` process (simple auth manager, the session's metadata DB).

A marketing user signs in on Airflow's login page, opens "Push campaigns", fills the form, uploads
a CSV, sees the count, confirms, and finds the campaign in the history; the history then follows
the run's progress (here played by the DAG's own task functions: no scheduler runs) without a
reload. Screenshots go to ``test-output/campaign_page/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from fixtures.network import free_port
from passpush import localdev, tasks
from passpush.seed import SeededProgram

pytestmark = [pytest.mark.browser, pytest.mark.airflow, pytest.mark.postgres]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "campaign_page"
USERS = {"marketing": ("user", "marketing-" + secrets.token_hex(8))}
MESSAGE = "Spring treat, {first_name|friend}: {points} points are waiting!"


@dataclass(frozen=True)
class ApiServer:
    url: str
    uploads: Path
    log: Path


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"airflow api-server did not answer within {timeout:g} s; see {log}")


@pytest.fixture(scope="module")
def api_server(serialized_dags: str, migrated_database_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """``airflow api-server`` on a free port; its users and passwords are this module's."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)")
    home = tmp_path_factory.mktemp("api-server")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: password for name, (_, password) in USERS.items()}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PASSPUSH_DATABASE_URL"}
    env.update({
        "AIRFLOW_CONN_LOYALTY_DB": localdev.airflow_connection_json(migrated_database_url),
        "PASSPUSH_UPLOAD_DIR": str(home / "uploads"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    })
    log = home / "api-server.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("wb") as out:
        process = subprocess.Popen([airflow, "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process, log)
        yield ApiServer(url=f"http://127.0.0.1:{port}", uploads=home / "uploads", log=log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def page(api_server: ApiServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 768})  # a laptop screen
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def _screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _sign_in(page: Any, server: ApiServer, username: str) -> None:
    page.goto(f"{server.url}/auth/login?next={server.url}/plugin/push-campaigns")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USERS[username][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/plugin/push-campaigns**")


def _page_frame(page: Any) -> Any:
    """The campaign page inside Airflow's frame (same origin: its DOM can be inspected)."""
    page.frame_locator("iframe[title='Push campaigns']").locator("#program option").first.wait_for(state="attached")
    return next(f for f in page.frames if f.parent_frame and urlsplit(f.url).path.startswith("/passpush/"))


def _csv(tmp_path: Path, db: psycopg.Connection, program: SeededProgram) -> tuple[Path, list[str]]:
    ids = [r[0] for r in db.execute("SELECT external_id FROM passes_master WHERE program_id = %s"
                                    " ORDER BY external_id LIMIT 40", (program.program_id,))]
    path = tmp_path / "spring members.csv"
    path.write_text("Member ID,Note\r\n" + "".join(f"{i},x\r\n" for i in [*ids, ids[3], "NO-SUCH-1", "NO-SUCH-2"]))
    return path, ids


def _run_conf(page: Any, server: ApiServer, name: str) -> tuple[str, dict[str, Any]]:
    """The newest push_campaign run with this campaign name, read through Airflow's REST API as the user."""
    response = page.request.get(f"{server.url}/api/v2/dags/push_campaign/dagRuns?order_by=-run_after&limit=20")
    assert response.ok, response.text()
    run = next(r for r in response.json()["dag_runs"] if (r["conf"] or {}).get("name") == name)
    return run["dag_run_id"], run["conf"]


def _history_row(frame: Any, name: str) -> Any:
    return frame.locator("#history tbody tr", has_text=name)


def test_a_marketing_user_launches_a_csv_campaign_and_follows_it(
        page: Any, api_server: ApiServer, seed_loyalty: Callable[..., SeededProgram],
        db: psycopg.Connection, migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect

    monkeypatch.setenv("PASSPUSH_UPLOAD_DIR", str(api_server.uploads))  # where this process reads the CSV too
    program = seed_loyalty(300)
    csv_path, ids = _csv(tmp_path, db, program)
    name = f"Spring treat {secrets.token_hex(3)}"

    _sign_in(page, api_server, "marketing")
    frame = _page_frame(page)

    # Airflow's look: its theme tokens are copied in, its font is used, and nothing overflows a laptop screen.
    assert frame.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--chakra-colors-brand-solid')")
    assert "Inter" in frame.evaluate("getComputedStyle(document.body).fontFamily")

    frame.locator("#program").select_option(program.program_id)
    frame.locator("#name").fill(name)
    frame.locator("#message").fill(MESSAGE)
    frame.locator("input[name=audience][value=csv]").check()
    frame.locator("#csv-file").set_input_files(str(csv_path))
    expect(frame.locator("#csv-status")).to_contain_text("43 member ids, 1 repeated")
    expect(frame.locator("#preview-targeted")).to_have_text("42")

    # The count on the page is the DAG's dry run of the same conf.
    (stored,) = (api_server.uploads / "campaign-page").glob("*.csv")
    conf = {"program_id": program.program_id, "name": name, "message": MESSAGE, "audience": "csv",
            "csv_path": str(stored), "dry_run": True}
    reference = tasks.create_campaign(conf, dag_id="browser_reference", run_id=name, conninfo=migrated_database_url)
    dry = tasks.resolve_audience(reference, conninfo=migrated_database_url)
    db.execute("DELETE FROM push_campaigns WHERE id = %s", (reference,))  # not a campaign of the history
    expect(frame.locator("#preview-iphone")).to_have_text(f"{dry['will_buzz_iphone']:,}")
    expect(frame.locator("#preview-google")).to_have_text(f"{dry['will_update_google']:,}")
    expect(frame.locator("#preview-eligible")).to_have_text(f"{dry['eligible']:,}")
    expect(frame.locator("#preview-skipped")).to_contain_text("unknown_member")
    assert frame.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _screenshot(page, "1-compose")

    frame.locator("#send-button").click()
    expect(frame.locator("#confirm-dialog")).to_be_visible()
    iphones, google = dry["will_buzz_iphone"], dry["will_update_google"]
    expect(frame.locator("#confirm-text")).to_have_text(
        f"This will buzz {iphones} phones ({iphones} iPhones; {google} Google passes update silently). Are you sure?")
    _screenshot(page, "2-confirm")
    frame.locator("#confirm-send").click()

    # Launched: the history shows the queued run at once, with a link to it in Airflow.
    expect(frame.locator("#panel-history")).to_be_visible()
    expect(_history_row(frame, name)).to_contain_text("queued")
    run_link = re.compile(r"/dags/push_campaign/runs/campaign_page__")
    expect(frame.locator("#banner a")).to_have_attribute("href", run_link)
    run_id, run_conf = _run_conf(page, api_server, name)
    assert run_conf["dry_run"] is False
    assert run_conf["confirm_recipients"] == dry["eligible"]
    assert run_conf["csv_path"] == str(stored)

    # The run's tasks, played here as the scheduler would run them: the page follows without a reload.
    campaign_id = tasks.create_campaign(run_conf, dag_id="push_campaign", run_id=run_id, conninfo=migrated_database_url)
    tasks.resolve_audience(campaign_id, conninfo=migrated_database_url)
    expect(_history_row(frame, name)).to_contain_text("processing")
    db.execute("UPDATE push_campaign_recipients SET status = 'SENT', sent_at = now(), attempts = 1"
               " WHERE campaign_id = %s AND member_id = ANY(%s) AND status = 'PENDING'", (campaign_id, ids[:7]))
    sent = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s AND status = 'SENT'",
                      (campaign_id,)).fetchone()[0]
    expect(_history_row(frame, name).locator("td").nth(5)).to_have_text(str(sent))
    _screenshot(page, "3-history")

    _history_row(frame, name).click()
    expect(frame.locator("#detail-name")).to_have_text(name)
    expect(frame.locator("#detail-message")).to_have_text(MESSAGE)
    expect(frame.locator("#chart svg")).to_be_visible()
    expect(frame.locator("#detail-run")).to_have_attribute("href", re.compile(re.escape(run_id.split(":")[0])))
    _screenshot(page, "4-detail")


def _compose(frame: Any, program: SeededProgram, name: str) -> None:
    frame.locator("#program").select_option(program.program_id)
    frame.locator("#name").fill(name)
    frame.locator("#message").fill(MESSAGE)


def _member_csv(tmp_path: Path, db: psycopg.Connection, program: SeededProgram, name: str, count: int) -> Path:
    ids = [r[0] for r in db.execute("SELECT external_id FROM passes_master WHERE program_id = %s"
                                    " ORDER BY external_id LIMIT %s", (program.program_id, count))]
    path = tmp_path / name
    path.write_text("member_id\n" + "".join(f"{i}\n" for i in ids))
    return path


def _requests_to(page: Any, path: str) -> list[Any]:
    """Every request the page sends to this API path, from now on."""
    seen: list[Any] = []
    page.on("request", lambda request: seen.append(request) if urlsplit(request.url).path.endswith(path) else None)
    return seen


def test_a_file_picked_while_another_uploads_is_never_sent_under_the_first_count(
        page: Any, api_server: ApiServer, seed_loyalty: Callable[..., SeededProgram], db: psycopg.Connection,
        tmp_path: Path) -> None:
    """Upload A, count it, pick B: Send waits for B's own count, and a confirmation of A never launches B."""
    from playwright.sync_api import expect

    program = seed_loyalty(120)
    first = _member_csv(tmp_path, db, program, "first.csv", 40)
    second = _member_csv(tmp_path, db, program, "second.csv", 12)
    launches = _requests_to(page, "/passpush/api/launch")
    _sign_in(page, api_server, "marketing")
    frame = _page_frame(page)
    _compose(frame, program, f"Race {secrets.token_hex(3)}")
    frame.locator("input[name=audience][value=csv]").check()
    send = frame.locator("#send-button")

    frame.locator("#csv-file").set_input_files(str(first))
    expect(frame.locator("#preview-targeted")).to_have_text("40")
    expect(send).to_be_enabled()

    # The second file's upload is held: while it is on its way, the first file's count cannot be sent.
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route("**/passpush/api/uploads", hold)
    frame.locator("#csv-file").set_input_files(str(second))
    expect(send).to_be_disabled()
    expect(frame.locator("#preview-empty")).to_have_text("Uploading the CSV…")
    frame.locator("#name").press("Enter")  # implicit submission: nothing either
    expect(frame.locator("#confirm-dialog")).to_be_hidden()
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/passpush/api/uploads", hold)
    expect(frame.locator("#preview-targeted")).to_have_text("12")
    expect(send).to_be_enabled()

    # The dialog confirms the second file's count; the first file picked again meanwhile is not launched.
    send.click()
    expect(frame.locator("#confirm-audience")).to_have_text("Audience: second.csv (12 member ids).")
    frame.locator("#csv-file").set_input_files(str(first))
    expect(frame.locator("#csv-status")).to_contain_text("first.csv: 40 member ids")
    frame.locator("#confirm-send").click()

    expect(frame.locator("#form-error")).to_contain_text("The form changed after the count you confirmed")
    expect(frame.locator("#preview-targeted")).to_have_text("40")
    assert launches == []


def test_segment_settings_are_read_as_typed_and_a_bad_entry_is_refused(
        page: Any, api_server: ApiServer, seed_loyalty: Callable[..., SeededProgram]) -> None:
    """"1e2" is 100 (parseInt read 1); "2.5" and "1e" are refused, never replaced by the default."""
    from playwright.sync_api import expect

    program = seed_loyalty(300)
    previews = _requests_to(page, "/passpush/api/preview")
    _sign_in(page, api_server, "marketing")
    frame = _page_frame(page)
    _compose(frame, program, f"Whales {secrets.token_hex(3)}")
    frame.locator("input[name=audience][value=segment]").check()
    frame.locator("#segment").select_option("whale")
    box = frame.locator("input[name=min_points]")
    send = frame.locator("#send-button")

    box.fill("1e2")
    expect(send).to_be_enabled()
    assert previews[-1].post_data_json["segment_params"] == {"min_points": 100}
    send.click()
    expect(frame.locator("#confirm-audience")).to_have_text("Audience: segment whale, min_points 100.")
    frame.locator("#confirm-cancel").click()

    for typed, problem in (("2.5", "min_points: 2.5 is not a whole number"), ("1e", "min_points: not a number")):
        asked = len(previews)
        box.fill("")
        box.press_sequentially(typed)
        expect(frame.locator("#form-error")).to_contain_text(problem)
        expect(frame.locator("#preview-empty")).to_contain_text(problem)
        expect(box).to_have_attribute("aria-invalid", "true")
        expect(send).to_be_disabled()
        frame.locator("#count-button").click()
        page.wait_for_timeout(1000)  # past the preview's debounce: no count was asked for
        assert len(previews) == asked, typed

    box.fill("")  # empty: the segment's default, and the dialog says so
    expect(send).to_be_enabled()
    assert previews[-1].post_data_json["segment_params"] == {}
    send.click()
    expect(frame.locator("#confirm-audience")).to_have_text("Audience: segment whale, min_points 500 (default).")
    _screenshot(page, "5-confirm-segment")
