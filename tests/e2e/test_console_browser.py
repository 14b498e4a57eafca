"""The console in a real browser, as a person uses it beside the chat: headless Chromium
(Debian's, through Selenium) against `persais serve` as a real process on the embedded
Postgres and the local forge, with the fake Telegram and the scripted model on loopback.

The story: log in with the link `persais console-link` prints; ask the Mechanic for Echo in
the chat and watch the job's steps arrive on its page over SSE; read the pull request's
diff; press Deploy on the Questions page; see the release live and `/echo` answering; roll
back from the Releases page. Then every page again at a phone's width, where none may be
wider than the screen. Every page visited is saved as a screenshot
(`test-artefacts/console/NN-name.png`), and at the end the browser's console holds no error
and no CSP violation, and every request the pages made went to Persais.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from app.settings import CHECKOUT_ROOT
from tests.support import browser as browsers
from tests.support.browser import PHONE, Browser, browser, missing, unavailable
from tests.support.fake_telegram import ADA, BOT_ID, FakeTelegram, fake_telegram, send, text_update
from tests.support.mechanic import REQUEST, routed_reply
from tests.support.processes import free_port, persais_env
from tests.support.scripted_llm import ScriptedLLM, scripted_llm
from tests.support.stack import PersaisProcess
from tests.support.waiting import wait_for

AGENT_FILE = "dynamic/agents/echo/agent.py"
PLAN_HOLD = 4.0  # s the planner's answer waits, so the job's page is open before it moves


@dataclass
class Persais:
    """`persais serve` with nothing configured but the chat and the model: the local forge,
    deploys on this machine."""

    home: Path
    server: PersaisProcess
    telegram: FakeTelegram
    llm: ScriptedLLM

    @property
    def url(self) -> str:
        return self.server.url

    def tell(self, text: str) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            send(client, text_update(ADA, text))

    def said(self) -> list[str]:
        return [
            str(c.params.get("text", "")) for c in self.telegram.calls
            if c.method in ("sendMessage", "editMessageText")
            and int(c.params.get("chat_id", 0)) == ADA
        ]  # fmt: skip

    def wait_said(self, fragment: str, timeout: float = 60, after: int = 0) -> str:
        """The first text said (from the `after`-th on) holding `fragment`."""

        def found() -> str | None:
            return next((t for t in self.said()[after:] if fragment in t), None)

        recent = "\n".join(self.said()[-8:])
        told = f"{fragment!r} in the chat; said:\n{recent}\n{self.server.tail(3000)}"
        text: str = wait_for(found, timeout, told)
        return text

    def console_link(self) -> str:
        """`persais console-link`, run as a person runs it beside the server."""
        done = subprocess.run(
            [sys.executable, "-m", "app", "console-link"], env=self.server.env,
            cwd=CHECKOUT_ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        link = done.stdout.splitlines()[0]
        assert link.startswith(f"{self.url}/console/login/"), done.stdout
        return link


@contextmanager
def persais(tmp_path: Path) -> Iterator[Persais]:
    home = tmp_path / "home"
    with ExitStack() as outside:
        tg_url, telegram = outside.enter_context(fake_telegram(BOT_ID))
        llm_url, llm = outside.enter_context(scripted_llm([]))
        llm.next_reply = lambda: routed_reply(llm.requests[-1])  # type: ignore[method-assign]
        llm.holds[0] = PLAN_HOLD
        env = persais_env(
            home, None, PERSAIS_LOG_LEVEL="INFO",
            TELEGRAM_API_URL=tg_url, PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA),
            PERSAIS_TELEGRAM_ADMINS=str(ADA),
            LLM_API_BASE=llm_url, LLM_API_KEY="sk-console-e2e", LLM_MODEL="scripted",
        )  # fmt: skip
        server = PersaisProcess(
            env, "127.0.0.1", free_port(), CHECKOUT_ROOT, tmp_path / "serve.log"
        )
        server.start()
        outside.callback(server.stop)
        server.wait_ready()
        yield Persais(home, server, telegram, llm)


def path_of(b: Browser) -> str:
    return urlsplit(b.driver.current_url).path


def reload_until(b: Browser, css: str, timeout: float, message: str) -> WebElement:
    """Reload the page until `css` is on it (for lists that are not live)."""
    deadline = time.monotonic() + timeout
    while True:
        found = b.all(css)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {message} on {b.driver.current_url}:\n"
                        + b.driver.find_element(By.TAG_NAME, "body").text[:3000])  # fmt: skip
        time.sleep(0.5)
        b.driver.refresh()


def press(b: Browser, form_css: str, label: str) -> str:
    """Press the button labelled `label` in a `form_css` form and accept the confirmation it
    asks for (on the button or its form); the confirmation's text. Parts of pages that
    refresh themselves may replace the form between finding and pressing: find it again."""
    for _ in range(5):
        try:
            form, button = form_with_button(b, form_css, label)
            asks = button.get_attribute("data-confirm") or form.get_attribute("data-confirm")
            assert asks, f"{label} asks for no confirmation"
            button.click()
        except StaleElementReferenceException:
            continue
        return b.accept_confirm(asks)
    raise AssertionError(f"{label}: the form kept changing under the click")


def form_with_button(b: Browser, form_css: str, label: str) -> tuple[WebElement, WebElement]:
    for form in b.all(form_css):
        for button in form.find_elements(By.TAG_NAME, "button"):
            if button.text.strip() == label:
                return form, button
    raise AssertionError(f"no {form_css} with a button {label!r} on {b.driver.current_url}:\n"
                         + b.driver.find_element(By.TAG_NAME, "body").text[:3000])  # fmt: skip


def stayed(b: Browser) -> bool:
    """Whether the page is still the one `mark_page` marked (no reload, no navigation)."""
    return bool(b.driver.execute_script("return window.persaisTestMark === true"))


def mark_page(b: Browser) -> None:
    b.driver.execute_script("window.persaisTestMark = true")


def watch_the_job(b: Browser, p: Persais) -> str:
    """Step 2: the job's page, its steps arriving without a reload until its pull request
    is linked; the job page's path."""
    b.get(f"{p.url}/console/jobs")
    job = reload_until(b, "table#jobs a[href^='/console/jobs/']", 60, "the Mechanic job")
    b.shot("jobs")
    job.click()
    b.wait(lambda d: path_of(b).startswith("/console/jobs/"), 10, "the job's page")
    b.find("ol#job-steps")
    b.find("#job-status")
    mark_page(b)
    first = len(b.all("ol#job-steps li"))
    b.shot("job-started")
    seen = [first]

    def pulled(_: Any) -> bool:
        seen.append(len(b.all("ol#job-steps li")))
        return bool(b.all("a#job-pull"))

    b.wait(pulled, 400, "the job's pull request, live on its page")
    assert stayed(b), "the job's page reloaded or navigated on its own"
    assert max(seen) > first, f"no step arrived while the page was open: {seen}"
    # The end of the stream brings what the job recorded: its plan and validation.
    b.wait(lambda d: "Outcome" in b.find("#job-record").text, 30, "the job's record, live")
    assert "echo" in b.find("#job-record").text
    assert stayed(b), "the job's page reloaded or navigated on its own"
    b.shot("job-done")
    href = b.find("a#job-pull").get_attribute("href") or ""
    assert urlsplit(href).path.startswith("/console/pulls/"), href
    return path_of(b)


def read_the_diff(b: Browser) -> int:
    """Step 3: [the job's pull request] → its diff, the new agent's file among the files."""
    b.find("a#job-pull").click()
    b.wait(lambda d: path_of(b).startswith("/console/pulls/"), 10, "the pull request's page")
    number = int(path_of(b).rstrip("/").rsplit("/", 1)[1])
    files = b.all("details.diff-file")
    summaries = [f.find_element(By.TAG_NAME, "summary") for f in files]
    names = [s.text for s in summaries]
    assert any(AGENT_FILE in name for name in names), names
    agent = next(s for s in summaries if AGENT_FILE in s.text)
    if agent.find_element(By.XPATH, "..").get_attribute("open") is None:
        agent.click()  # collapsible: opened by its summary
    b.shot("pull-diff")
    return number


def deploy_from_questions(b: Browser, p: Persais, pull: int) -> None:
    """Step 4: Deploy on the Questions page, confirmed; the chat hears the release is live."""
    b.get(f"{p.url}/console/questions")
    reload_until(b, "form.question", 60, "the open questions")
    b.shot("questions")
    press(b, "form.question", "Deploy")
    live = p.wait_said("is live", 300)
    assert f"PR #{pull}" in live, live
    assert "/echo answering" in live, live

    def closed(_: Any) -> bool:  # the page follows by itself: the question leaves the open ones
        try:
            form_with_button(b, "form.question", "Deploy")
        except (AssertionError, StaleElementReferenceException):
            return True
        return False

    b.wait(closed, 30, "the Deploy question closed on the Questions page")
    assert "Deploy" in b.find("main").text
    b.shot("questions-answered")


def see_it_live(b: Browser, p: Persais, pull: int) -> None:
    """Step 5: the release live on the Releases page, and /echo answering in the chat."""
    b.get(f"{p.url}/console/releases")
    live = b.find("table#releases tr.live")
    assert f"#{pull}" in live.text, live.text
    assert live_release(b) == "release 2"
    b.shot("releases-live")
    p.tell("/echo Hello")
    p.wait_said("Echo: Hello", 60)


def live_release(b: Browser) -> str:
    """The live row's release, as its header cell names it ('release 2')."""
    rows = b.all("table#releases tr.live")
    return rows[0].find_element(By.TAG_NAME, "th").text.strip() if rows else ""


def roll_back(b: Browser, p: Persais) -> None:
    """Step 6: Roll back on the Releases page, confirmed: release 1 live again (the page
    follows the request by itself), and /echo no longer answers in the chat."""
    assert live_release(b) == "release 2"
    press(b, "table#releases form", "Roll back to release 1")
    b.wait(lambda d: live_release(b) == "release 1", 120, "release 1 live again")
    b.wait(lambda d: "is in service again" in b.find("main").text, 60, "the rollback's outcome")
    b.shot("releases-rolled-back")
    answered = len(p.said())
    p.tell("/echo Hello")
    p.wait_said("Unknown command /echo", 60, after=answered)
    assert not any("Echo: Hello" in t for t in p.said()[answered:]), p.said()[answered:]


PAGES = [
    ("overview", "/console/", "main"),
    ("questions", "/console/questions", "main"),
    ("jobs", "/console/jobs", "table#jobs"),
    ("pulls", "/console/pulls", "table#pulls"),
    ("releases", "/console/releases", "table#releases"),
    ("agents", "/console/agents", "table#agents"),
    ("inbox", "/console/inbox", "table#inbox"),
    ("audit", "/console/audit", "table#audit"),
    ("memory", "/console/memory", "form#ask"),
]
# A page wider than the window scrolls sideways; what sticks out past its right edge. (A
# table or a diff scrolling in its own box does not widen the page.)
OVERFLOW = """
const page = document.documentElement;
if (page.scrollWidth <= page.clientWidth + 1) return [];
const out = [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > page.clientWidth + 1)
  .map((e) => e.tagName + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "")
    + " right=" + Math.round(e.getBoundingClientRect().right)
    + " " + getComputedStyle(e).position);
out.sort((a, b) => b.endsWith("absolute") - a.endsWith("absolute"));
return [page.scrollWidth + " px wide", ...out.slice(0, 6)];
"""


def the_other_pages(b: Browser, p: Persais, job: str, pull: int) -> None:
    """Every page at a desktop's width, then at a phone's, where nothing may stick out of
    the screen but a table or a diff scrolling in its own box."""
    for name, path, css in PAGES[5:]:
        b.get(f"{p.url}{path}")
        b.find(css)
        b.shot(name)
    b.resize(PHONE)
    wide = {}
    for name, path, css in [*PAGES, ("job", job, "ol#job-steps"),
                            ("pull", f"/console/pulls/{pull}", "details.diff-file")]:  # fmt: skip
        b.get(f"{p.url}{path}")
        b.find(css)
        b.shot(f"phone-{name}")
        sticking = b.driver.execute_script(OVERFLOW)
        if sticking:
            wide[name] = sticking
    assert wide == {}, f"wider than a phone's screen ({PHONE[0]} px): {wide}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_person_deploys_echo_and_rolls_it_back_from_the_console(tmp_path: Path) -> None:
    reason = missing()
    if reason is not None:
        unavailable(reason)
    with persais(tmp_path) as p, browser(tmp_path) as b:
        # 1. The one-time link logs in and leads to the overview.
        b.get(p.console_link())
        b.wait(lambda d: path_of(b) == "/console/", 10, "the overview after the link")
        assert "(admin)" in b.find("header").text
        b.shot("overview")

        # 2. A Mechanic job asked in the chat, watched live on the Jobs page.
        p.tell(f"/mechanic {REQUEST}")
        job = watch_the_job(b, p)
        p.wait_said("✅ Pull request #", 60)

        # 3. Its pull request's diff.
        pull = read_the_diff(b)

        # 4. Deploy from the Questions page.
        deploy_from_questions(b, p, pull)

        # 5. The release live; /echo answers.
        see_it_live(b, p, pull)

        # 6. Roll back from the Releases page.
        roll_back(b, p)

        the_other_pages(b, p, job, pull)
        assert b.problems() == [], "the browser's console has errors or CSP violations"
        assert b.elsewhere(p.url) == [], "the pages asked for something not on Persais"
        assert any(url.startswith(f"{p.url}/console/static/") for _, url in b.requests)
        # The watch on the console is real: an inline script is refused, and it shows.
        b.driver.execute_script(
            "const s = document.createElement('script'); s.textContent = 'window.x = 1';"
            " document.body.appendChild(s);"
        )
        assert any("Content Security Policy" in m for m in b.problems()), b.console


def test_without_a_browser_the_story_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browsers, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium is missing"), browser(tmp_path):
        pytest.fail("a browser without its binary")


def test_under_ci_a_missing_browser_fails_the_story(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browsers, "CHROMEDRIVER", tmp_path / "no-chromedriver")
    monkeypatch.setenv("CI", "true")
    refused = r"no-chromedriver is missing .*: CI must run"
    with pytest.raises(pytest.fail.Exception, match=refused), browser(tmp_path):
        pytest.fail("a browser without its driver")
