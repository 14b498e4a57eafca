"""`persais setup github` against the fake GitHub: the local page, the manifest it posts,
GitHub's redirect with the right and a wrong state, the code's conversion, and the files
written (or not) afterwards. A test "browser" (httpx) reads the page's form and posts it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.settings import load_settings
from app.setup import env_file
from app.setup.flow import Request, run
from app.setup.github_app import (
    DEFAULT_API_URL,
    EVENTS,
    PERMISSIONS,
    SetupError,
    place,
)
from app.setup.manifest_page import CALLBACK
from tests.support.fake_github import FakeGitHub, app_key_pair, fake_github
from tests.support.processes import persais_env

README = Path(__file__).resolve().parents[1] / "README.md"
HOOK = "https://persais.example.com/webhooks/github"


@pytest.fixture(scope="module")
def github() -> Iterator[tuple[str, FakeGitHub]]:
    with fake_github(app_key_pair()[1]) as served:
        yield served


class FormReader(HTMLParser):
    """The page's one form: where it posts, and its fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = found["action"]
        elif tag == "input":
            self.fields[found["name"]] = found["value"]


@dataclass
class Visit:
    page: str  # the local page's URL
    action: str  # where its form posts
    manifest: dict[str, Any]
    state: str


async def read_page(http: httpx.AsyncClient, url: str) -> tuple[Visit, dict[str, str]]:
    answer = await http.get(url)
    assert answer.status_code == 200
    form = FormReader()
    form.feed(answer.text)
    manifest = json.loads(form.fields["manifest"])
    state = parse_qs(urlsplit(form.action).query)["state"][0]
    return Visit(url, form.action, manifest, state), form.fields


Browse = Callable[[httpx.AsyncClient, Visit, dict[str, str]], Awaitable[None]]


async def press_the_button(http: httpx.AsyncClient, visit: Visit, fields: dict[str, str]) -> None:
    """As a browser: post the form to GitHub, follow its redirect back to the page."""
    answer = await http.post(visit.action, data=fields, follow_redirects=True)
    assert answer.status_code == 200, answer.text
    assert "Install it on your repositories" in answer.text


def setup(
    tmp_path: Path, base: str, browse: Browse = press_the_button, **given: Any
) -> tuple[list[str], list[Visit]]:
    """Run the flow with a test browser; returns what it printed and what the browser saw."""
    printed: list[str] = []
    visits: list[Visit] = []
    request = Request(
        webhook_url=HOOK, env_file=tmp_path / ".env", key_dir=tmp_path / "home",
        github_url=base, api_url=base, timeout=given.pop("timeout", 30), **given,
    )  # fmt: skip
    settings = load_settings(None, PERSAIS_HOME=str(tmp_path / "home"))

    async def main() -> None:
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        flow = asyncio.create_task(
            run(settings, request, say=printed.append, ready=ready.set_result)
        )
        async with httpx.AsyncClient(timeout=30) as http:
            visit, fields = await read_page(http, await ready)
            visits.append(visit)
            await browse(http, visit, fields)
        await flow

    asyncio.run(main())
    return printed, visits


def secrets_of(fake: FakeGitHub) -> list[str]:
    app = fake.manifest_apps.apps[-1]
    pem_body = app["pem"].splitlines()[1]
    return [app["pem"], pem_body, app["webhook_secret"], app["client_secret"]]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_manifest_asks_for_exactly_what_persais_needs(
    tmp_path: Path, github: tuple[str, FakeGitHub], capfd: pytest.CaptureFixture[str]
) -> None:
    base, fake = github
    printed, [visit] = setup(tmp_path, base, name="persais-test")
    assert visit.action.startswith(f"{base}/settings/apps/new?state=")
    assert visit.manifest == {
        "name": "persais-test",
        "url": "https://persais.example.com/",
        "description": visit.manifest["description"],
        "hook_attributes": {"url": HOOK, "active": True},
        "redirect_url": visit.page.rstrip("/") + CALLBACK,
        "callback_urls": ["https://persais.example.com/console/auth/github/callback"],
        "public": False,
        "default_permissions": {
            "contents": "write", "pull_requests": "write", "checks": "write",
            "issues": "write", "metadata": "read",
        },
        "default_events": [
            "pull_request", "pull_request_review_comment", "issue_comment", "check_run", "push",
        ],
    }  # fmt: skip
    assert urlsplit(visit.page).hostname == "127.0.0.1"
    app = fake.manifest_apps.apps[-1]
    assert fake.manifest_apps.manifests[-1]["_owner"] is None
    printed_text = "\n".join(printed)
    assert f"{base}/apps/persais-test/installations/new" in printed_text
    output = capfd.readouterr()
    for secret in secrets_of(fake):
        assert secret not in printed_text + output.out + output.err

    # the files: the key by path, mode 0600; .env not readable by others, loadable
    env = tmp_path / ".env"
    assert mode(env) == 0o600
    settings = load_settings(env_file=env)
    assert settings.github_app_id == app["id"]
    assert settings.github_private_key_path is not None
    assert settings.github_private_key_path.is_absolute()
    assert mode(settings.github_private_key_path) == 0o600
    assert settings.private_key_pem() == app["pem"]
    assert settings.github_webhook_secret is not None
    assert settings.github_webhook_secret.get_secret_value() == app["webhook_secret"]
    text = env.read_text()
    assert f"GITHUB_CLIENT_ID={app['client_id']}\n" in text
    assert f"GITHUB_CLIENT_SECRET={app['client_secret']}\n" in text
    assert f"GITHUB_API_URL={base}\n" in text
    assert settings.github_client_id == app["client_id"]
    assert settings.github_client_secret is not None
    assert settings.github_client_secret.get_secret_value() == app["client_secret"]
    assert not list(tmp_path.glob(".env.bak*"))  # there was no .env to keep


def test_an_existing_env_is_merged_and_kept_in_a_backup(
    tmp_path: Path, github: tuple[str, FakeGitHub]
) -> None:
    base, fake = github
    env = tmp_path / ".env"
    old = (
        "# my settings\n"
        "LLM_API_KEY=sk-mine\n"
        "GITHUB_APP_ID=1\n"
        'GITHUB_PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\n'
        "old\n"
        '-----END RSA PRIVATE KEY-----"\n'
        "\n"
        "export PERSAIS_TELEGRAM_ADMINS=5, 6  # the admins\n"
        "GITHUB_APP_ID=2\n"
    )
    env.write_text(old)
    env.chmod(0o644)
    setup(tmp_path, base)
    [backup] = tmp_path.glob(".env.bak-*")
    assert backup.read_text() == old
    assert mode(backup) == 0o600
    assert mode(env) == 0o600
    text = env.read_text()
    app = fake.manifest_apps.apps[-1]
    assert text.startswith(f"# my settings\nLLM_API_KEY=sk-mine\nGITHUB_APP_ID={app['id']}\n")
    assert "GITHUB_PRIVATE_KEY=\n" in text
    assert "old\n" not in text
    assert "export PERSAIS_TELEGRAM_ADMINS=5, 6  # the admins\n" in text
    assert text.count("GITHUB_APP_ID=") == 1
    settings = load_settings(env_file=env)
    assert settings.github_app_id == app["id"]
    assert settings.private_key_pem() == app["pem"]
    assert settings.llm_api_key is not None
    assert settings.llm_api_key.get_secret_value() == "sk-mine"
    assert settings.telegram_admins == [5, 6]


def test_an_answer_with_another_state_is_refused_and_the_right_one_still_works(
    tmp_path: Path, github: tuple[str, FakeGitHub]
) -> None:
    base, fake = github
    tried = len(fake.manifest_apps.conversions)

    async def forged_then_real(
        http: httpx.AsyncClient, visit: Visit, fields: dict[str, str]
    ) -> None:
        callback = visit.page.rstrip("/") + CALLBACK
        for query in ({"code": "abc123", "state": "forged"}, {"code": "abc123"}):
            answer = await http.get(callback, params=query)
            assert answer.status_code == 400
            assert "state" in answer.text
        assert len(fake.manifest_apps.conversions) == tried  # nothing traded
        await press_the_button(http, visit, fields)

    setup(tmp_path, base, browse=forged_then_real)
    assert len(fake.manifest_apps.conversions) == tried + 1
    assert (tmp_path / ".env").exists()


@pytest.mark.parametrize("how", ["made-up", "expired", "used"])
def test_a_refused_code_is_one_line_and_writes_nothing(
    tmp_path: Path, github: tuple[str, FakeGitHub], how: str
) -> None:
    base, fake = github
    (tmp_path / ".env").write_text("LLM_API_KEY=sk-mine\n")

    async def with_a_bad_code(
        http: httpx.AsyncClient, visit: Visit, fields: dict[str, str]
    ) -> None:
        if how == "made-up":
            back = f"{visit.page.rstrip('/')}{CALLBACK}?code=0123abcd&state={visit.state}"
        else:
            redirect = await http.post(visit.action, data=fields)
            assert redirect.status_code == 302
            back = redirect.headers["location"]
            code = parse_qs(urlsplit(back).query)["code"][0]
            if how == "expired":
                fake.manifest_apps.expire()
            else:
                await fake_trade(base, code)
        answer = await http.get(back)
        assert answer.status_code == 502
        assert "GitHub refused the code" in answer.text

    with pytest.raises(SetupError) as refused:
        setup(tmp_path, base, browse=with_a_bad_code)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("GitHub refused the code (404 Not Found)")
    assert "Nothing was written" in message
    assert (tmp_path / ".env").read_text() == "LLM_API_KEY=sk-mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


async def fake_trade(base: str, code: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{base}/app-manifests/{code}/conversions")
        assert answer.status_code == 201


def test_an_organisations_app_is_made_on_its_page(
    tmp_path: Path, github: tuple[str, FakeGitHub]
) -> None:
    base, fake = github
    _, [visit] = setup(tmp_path, base, org="acme")
    assert visit.action.startswith(f"{base}/organizations/acme/settings/apps/new?state=")
    assert fake.manifest_apps.manifests[-1]["_owner"] == "acme"


def test_no_answer_in_time_writes_nothing(tmp_path: Path, github: tuple[str, FakeGitHub]) -> None:
    async def wait(http: httpx.AsyncClient, visit: Visit, fields: dict[str, str]) -> None:
        pass

    with pytest.raises(SetupError, match=r"no answer from GitHub within 0\.01 minutes"):
        setup(tmp_path, github[0], browse=wait, timeout=0.6)
    assert list(tmp_path.iterdir()) == []


def test_github_enterprise_and_github_com_urls() -> None:
    assert place(None, None, DEFAULT_API_URL, None).web_url == "https://github.com"
    ghes = place("https://ghe.example.com/", None, DEFAULT_API_URL, "acme")
    assert (ghes.web_url, ghes.api_url) == (
        "https://ghe.example.com",
        "https://ghe.example.com/api/v3",
    )
    assert ghes.new_app_url == "https://ghe.example.com/organizations/acme/settings/apps/new"
    from_setting = place(None, None, "https://ghe.example.com/api/v3", None)
    assert from_setting.new_app_url == "https://ghe.example.com/settings/apps/new"
    with pytest.raises(SetupError, match="--org"):
        place(None, None, DEFAULT_API_URL, "not/an/org")


def test_the_readme_lists_the_permissions_and_events_the_manifest_asks_for() -> None:
    text = " ".join(README.read_text().split())
    permissions = re.search(r"\*\*Repository permissions\*\*:(.*?)\.", text)
    events = re.search(r"\*\*Events\*\*:(.*?)\. -", text)
    assert permissions is not None
    assert events is not None
    listed = dict(
        re.fullmatch(r"(.+?) \*(read|read & write)\*", part.strip()).groups()  # type: ignore[union-attr]
        for part in permissions.group(1).split(",")
    )
    access = {"read": "read", "write": "read & write"}
    assert listed == {p.label: access[p.access] for p in PERMISSIONS}
    named = [re.sub(r"\(.*?\)", "", part).strip() for part in events.group(1).split(",")]
    assert named == [e.label for e in EVENTS]


def test_the_command_prints_the_page_and_the_link_but_no_secret(
    tmp_path: Path, github: tuple[str, FakeGitHub]
) -> None:
    """`persais setup github` as a person runs it, in its own process."""
    base, fake = github
    env = persais_env(tmp_path / "home", PERSAIS_LOG_LEVEL="INFO")
    args = [
        sys.executable, "-m", "app", "setup", "github", "--webhook-url", HOOK,
        "--github-url", base, "--api-url", base, "--timeout-minutes", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        found = re.search(r"Open (http://127\.0\.0\.1:\d+/) ", lines[-1])
        assert found, lines

        async def browse() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                visit, fields = await read_page(http, found.group(1))  # type: ignore[union-attr]
                await press_the_button(http, visit, fields)

        asyncio.run(browse())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    everything = "".join(lines) + out + err
    for secret in secrets_of(fake):
        assert secret not in everything
    app = fake.manifest_apps.apps[-1]
    assert f"Install it on your repositories: {base}/apps/{app['slug']}/installations/new" in out
    assert load_settings(env_file=tmp_path / ".env").github_app_id == app["id"]
    keys = list((tmp_path / "home").glob("github-app-*.private-key.pem"))
    assert [mode(k) for k in keys] == [0o600]


def test_without_a_webhook_url_or_a_terminal_the_command_says_what_to_give(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "setup", "github"], cwd=tmp_path,
        env=persais_env(tmp_path / "home"), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "persais: give --webhook-url https://<your host>/webhooks/github\n"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_page_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    # Python keeps SIGINT ignored when it starts so (a background job of a script): undo it.
    persais = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from app.cli import main; main(sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", persais, "setup", "github", "--webhook-url", HOOK],
        cwd=tmp_path, env=persais_env(tmp_path / "home"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "Open http://127.0.0.1:" in proc.stdout.readline() + proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == "persais: setup github: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_an_env_file_that_cannot_be_merged_faithfully_is_left_as_it_is(tmp_path: Path) -> None:
    """An unclosed quote: python-dotenv skips the line, a line-by-line merge would swallow
    the next ones. The merge is checked by parsing, so the file is refused, not damaged."""
    env = tmp_path / ".env"
    old = 'GITHUB_APP_ID="1\nLLM_API_KEY=sk-mine\n'
    env.write_text(old)
    with pytest.raises(env_file.EnvFileError, match="left as it is"):
        env_file.merge(env, {"GITHUB_APP_ID": "2"})
    assert env.read_text() == old
    assert list(tmp_path.iterdir()) == [env]
