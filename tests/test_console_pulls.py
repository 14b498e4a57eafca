"""The console's Pull requests pages over a real local forge (a bare git repository and its
records in Postgres): the list, one pull request with its coloured diff, GitHub's reviewed
pull requests; and the unified-diff parser they rest on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.console import diff
from app.console.pages import pulls as pulls_page
from app.forge import local_pulls
from app.forge.local import LocalForge
from app.settings import Settings
from tests.support.console import console_client, log_in
from tests.support.git_repos import home_repository
from tests.support.local_pulls import commit, git, open_pull
from tests.support.pools import open_pool

Sql = Callable[..., list[tuple[Any, ...]]]

AGENT = '''"""An agent that echoes."""


class Echo:
    def handle(self, text):
        return f"<script>alert('{text}')</script>"
'''


def with_forge(settings: Settings, database: str, checkout: Path, work: Any) -> Any:
    """`work(forge)` with a LocalForge on the settings' home: the one the console reads."""

    async def go() -> Any:
        async with open_pool(database) as pool:
            return await work(LocalForge(pool, settings.home, checkout))

    return asyncio.run(go())


@pytest.fixture
def pulls(settings: Settings, database: str, tmp_path: Path, sql: Sql) -> dict[str, Any]:
    """#1 open (a Mechanic job's: an agent with a `<script>` in it, a rename, a binary file,
    a 2,100-line file), #2 merged with its branch deleted."""
    checkout = home_repository(tmp_path / "checkout")
    sql("INSERT INTO jobs (id, conversation, requested_by, request, status, rounds)"
        " VALUES ('j1', 'cli:ada', 'cli:ada', 'Echo', 'opened', 1)")  # fmt: skip

    async def make(forge: LocalForge) -> dict[str, Any]:
        bare = await forge.repository()
        scratch = tmp_path / "w1"
        git(bare, "worktree", "add", "-q", "-b", "mechanic/echo-j1", str(scratch), "main")
        git(scratch, "mv", "dynamic/agents/README.md", "dynamic/agents/AGENTS.md")
        (scratch / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
        long = "".join(f"line = {i}\n" for i in range(2100))
        head = commit(scratch, {"dynamic/agents/echo/agent.py": AGENT, "big.py": long}, "Echo")
        git(bare, "worktree", "remove", "--force", str(scratch))
        first = await forge.publish(
            job_id="j1", branch="mechanic/echo-j1", head_sha=head, base="main",
            title="Add the <b>Echo</b> agent", body="Adds /echo.\n<img src=x onerror=alert(1)>",
        )  # fmt: skip
        number, head2 = await open_pull(
            forge, tmp_path / "w2", "mechanic/hello-j2", {"hello.md": "# Hello\n"},
            title="Say hello",
        )  # fmt: skip
        merged = await forge.merge(number, sha=head2, title="Say hello")
        git(bare, "branch", "-D", "mechanic/hello-j2")
        return {"open": first.number, "merged": number, "merge_sha": merged}

    made: dict[str, Any] = with_forge(settings, database, checkout, make)
    return made


def test_a_pull_request_shows_its_files_coloured_and_escaped(
    settings: Settings, database: str, pulls: dict[str, Any]
) -> None:
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        page = client.get(f"/console/pulls/{pulls['open']}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "<h1>#1 Add the &lt;b&gt;Echo&lt;/b&gt; agent</h1>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the body, escaped
    assert "<img" not in html
    assert "<code>mechanic/echo-j1</code> → <code>main</code>" in html
    assert "Mechanic validation: passed (job j1, 1 repair round; the job is opened)" in html
    assert '<a href="/console/jobs/j1">j1</a> <span class="muted">(opened)</span>' in html
    summaries = re.findall(
        r'<details class="diff-file" open>\s*<summary><code class="diff-path">([^<]*)</code>', html
    )
    assert summaries == [
        "big.py", "dynamic/agents/README.md → dynamic/agents/AGENTS.md",
        "dynamic/agents/echo/agent.py", "logo.png",
    ]  # fmt: skip
    # The agent's file: coloured by the Python lexer, its <script> escaped inside the spans.
    agent = html[html.index("dynamic/agents/echo/agent.py</code>") :]
    agent = agent[: agent.index("</details>")]
    assert '<span class="diff-plus">+6</span> <span class="diff-minus">\u22120</span>' in agent
    assert '<tr class="diff-add"><td class="ln"></td><td class="ln">4</td>' in agent
    assert '<span class="k">class</span><span class="w"> </span><span class="nc">Echo' in agent
    assert "&lt;script&gt;alert(" in agent
    assert "<script>" not in html.replace('<script src="/console/static/', "")
    assert "Binary file: not shown." in html
    assert "(100% similar)" in html
    # The long file: 2,000 lines and a word that there are more.
    big = html[html.index("big.py</code>") :]
    big = big[: big.index("</details>")]
    assert '<span class="diff-plus">+2100</span>' in big
    assert big.count('<tr class="diff-add">') == diff.MAX_LINES - 1  # one row is the hunk's
    assert "Diff truncated: 2000 of its lines shown." in big
    assert '<link rel="stylesheet" href="/console/static/pygments.css">' in html


def test_a_merged_pull_request_shows_its_change_with_its_branch_gone(
    settings: Settings, database: str, pulls: dict[str, Any]
) -> None:
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get(f"/console/pulls/{pulls['merged']}")
        listing = client.get("/console/pulls")
        merged_only = client.get("/console/pulls?state=merged")
    assert page.status_code == 200
    assert pulls["merge_sha"][:12] in page.text
    assert '<code class="diff-path">hello.md</code>' in page.text
    assert '<span class="gh"># Hello</span>' in page.text  # the Markdown lexer's heading
    assert "no Mechanic job opened this" in page.text
    assert "/console/jobs/" not in page.text  # its job id names no job here
    table = listing.text[listing.text.index('<table id="pulls">') :]
    assert table.index('href="/console/pulls/2"') < table.index('href="/console/pulls/1"')
    assert "Add the &lt;b&gt;Echo&lt;/b&gt; agent" in table
    assert '<a href="/console/jobs/j1">job j1</a>' in table
    assert '<span class="muted">no job</span>' in table
    assert 'href="/console/pulls/1"' not in merged_only.text
    assert 'href="/console/pulls/2"' in merged_only.text


def test_an_unknown_number_is_404_and_a_stranger_sees_nothing(
    settings: Settings, database: str, pulls: dict[str, Any]
) -> None:
    with console_client(settings, database) as client:
        for path in ["/console/pulls", "/console/pulls/1", "/console/pulls/99",
                     "/console/pulls/github/octo/home/5"]:  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "Echo" not in answer.text
            assert "Say hello" not in answer.text
            assert "diff-file" not in answer.text
        log_in(client, database, "cli:bob", "reader")
        missing = client.get("/console/pulls/99")
        assert missing.status_code == 404
        assert "There is no pull request #99 on the local forge." in missing.text
        assert client.get("/console/pulls/github/octo/home/5").status_code == 404
        assert client.get("/console/pulls/abc").status_code == 404
        assert client.get("/console/pulls/99999999999").status_code == 404
        assert client.get("/console/pulls/github/octo/home/99999999999").status_code == 404
        bad = client.get("/console/pulls?state=lost")
        assert bad.status_code == 200
        assert "There is no state &#39;lost&#39;" in bad.text


def test_a_change_that_cannot_be_read_is_said_and_a_long_one_is_cut(
    settings: Settings, database: str, tmp_path: Path, sql: Sql, pulls: dict[str, Any]
) -> None:
    sql("INSERT INTO pull_requests (repository, branch, base, head_sha, title, body, state)"
        " VALUES ('persais', 'gone', 'main', %s, 'Lost', '', 'closed')", "f" * 40)  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database, "cli:bob", "reader")
        lost = client.get("/console/pulls/3")
    assert lost.status_code == 200
    assert "The change cannot be read: the commits of #3 are no longer in the forge." in lost.text
    assert "diff-file" not in lost.text

    async def read(forge: LocalForge) -> tuple[str, bool, str, bool]:
        pull = await local_pulls.record(forge, pulls["open"])
        whole, cut = await local_pulls.patch(forge, pull, limit=10_000_000)
        part, cut_short = await local_pulls.patch(forge, pull, limit=1_000)
        return whole, cut, part, cut_short

    whole, cut, part, cut_short = with_forge(settings, database, tmp_path / "checkout", read)
    assert not cut
    assert cut_short
    assert whole.startswith(part)
    assert part.endswith("\n")
    assert 900 < len(part.encode()) <= 1_000


def test_without_the_forges_repository_the_page_says_so(
    settings: Settings, database: str, sql: Sql
) -> None:
    sql("INSERT INTO pull_requests (repository, branch, base, head_sha, title, body)"
        " VALUES ('persais', 'b', 'main', 'f00', 'Somewhere else', '')")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get("/console/pulls/1")
    assert page.status_code == 200
    assert "The local forge&#39;s repository is not on this machine." in page.text
    assert not (settings.home / "forge").exists()  # reading made nothing


def test_the_list_is_paged_and_github_reviews_are_listed(
    settings: Settings, database: str, sql: Sql
) -> None:
    sql("INSERT INTO pull_requests (repository, branch, base, head_sha, title, body, updated_at)"
        " SELECT 'persais', 'b' || i, 'main', 'f00', 'Change ' || i, '',"
        " now() - make_interval(mins => 60 - i) FROM generate_series(1, 60) AS i")  # fmt: skip
    sql(
        "INSERT INTO reviews (repository, pull_number, head_sha, trigger, delivery, status,"
        " conclusion, comments, findings, created_at, finished_at) VALUES"
        " ('octo/home', 7, 'abc', 'opened', 'd1', 'posted', 'neutral', 1, 2,"
        "  now() - interval '3 days', now() - interval '3 days'),"
        " ('octo/home', 7, 'def', 'synchronize', 'd2', 'posted', 'failure', 2, 3, now(), now())"
    )
    review = sql("SELECT id FROM reviews WHERE delivery = 'd2'")[0][0]
    sql(
        "INSERT INTO review_findings (repository, pull_number, fingerprint, review, path, line,"
        " severity) VALUES ('octo/home', 7, 'f1', %s, 'app/<x>.py', 12, 'error')",
        review,
    )
    with console_client(settings, database) as client:
        log_in(client, database, "cli:bob", "reader")
        first = client.get("/console/pulls")
        second = client.get("/console/pulls?page=2")
        github_only = client.get("/console/pulls?forge=github")
        one = client.get("/console/pulls/github/octo/home/7")
    rows = re.findall(r'<a href="(/console/pulls/[^"]+)">', first.text)
    assert len(rows) == 50
    assert rows[0] == "/console/pulls/github/octo/home/7"  # reviewed now: the newest
    assert rows[1:3] == ["/console/pulls/60", "/console/pulls/59"]
    assert "problems found, 3 findings" in first.text
    assert 'href="/console/pulls?page=2" rel="next"' in first.text
    more = re.findall(r'<a href="(/console/pulls/[^"]+)">', second.text)
    assert more[0] == "/console/pulls/11"
    assert more[-1] == "/console/pulls/1"
    assert len(more) == 11
    assert 'rel="next"' not in second.text
    assert re.findall(r'<a href="(/console/pulls/[^"]+)">', github_only.text) == [
        "/console/pulls/github/octo/home/7"
    ]
    assert one.status_code == 200
    assert 'href="https://github.com/octo/home/pull/7"' in one.text
    assert "<strong>problems found</strong>, 3 findings, 2 inline comments" in one.text
    assert "<code>app/&lt;x&gt;.py:12</code>" in one.text
    assert one.text.index("synchronize") < one.text.index("opened")


def test_view_pr_of_a_local_pull_request_opens_its_page_in_the_console(
    settings: Settings, database: str, sql: Sql
) -> None:
    """The forge records `persais pr show N`; the Questions page links it to /console/pulls/N
    (the chat makes it the console's full address as it shows it)."""
    sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
        " requested_by, expires_at) VALUES ('pr1', 'cli:ada', 'mechanic', 'pr:j1', 'PR open',"
        " '[[\"deploy\", \"Deploy\"], [\"view\", \"View PR\", \"persais pr show 4\"]]',"
        " 'cli:ada', now() + interval '1 hour')")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get("/console/questions")
    assert page.status_code == 200
    assert '<a class="button" href="/console/pulls/4">View PR</a>' in page.text


def test_a_page_shows_so_many_lines_colours_fewer_and_colours_a_change_once() -> None:
    added = "".join(f"+x = {i}\n" for i in range(diff.MAX_LINES))
    patch = "".join(
        f"diff --git a/f{n}.py b/f{n}.py\nnew file mode 100644\n--- /dev/null\n"
        f"+++ b/f{n}.py\n@@ -0,0 +1,{diff.MAX_LINES} @@\n{added}"
        for n in range(pulls_page.PAGE_LINES // diff.MAX_LINES + 1)
    )
    shown = pulls_page.ShownFiles(keep=1)
    files, more = shown.files(patch)
    assert not more
    assert [len(f.lines) for f in files] == [diff.MAX_LINES] * 5 + [0]
    assert [f.truncated for f in files] == [True] * 5 + [True]  # each hunk's header is a line
    assert all(f.added == diff.MAX_LINES for f in files)
    # Coloured a hunk at a time while the budget lasts: two hunks fit in it, a third not.
    coloured = [sum("<span" in ln.html for ln in f.lines) for f in files]
    assert coloured == [diff.MAX_LINES - 1] * 2 + [0] * 4
    assert 2 * (diff.MAX_LINES - 1) <= pulls_page.COLOUR_LINES < 3 * (diff.MAX_LINES - 1)
    assert "&lt;" not in str(files[4].lines[1].html)
    assert str(files[4].lines[1].html) == "x = 0"  # escaped plain past the budget
    again, _ = shown.files(patch)
    assert again is files  # the same change is parsed and coloured once
    shown.files(patch.replace("x = 0", "y = 0"))
    assert shown.files(patch)[0] is not files  # kept only the latest


def test_the_stylesheet_is_the_generated_one() -> None:
    """static/pygments.css is what `python -m app.console.diff` writes: run it if this fails."""
    static = Path(diff.__file__).parent / "static" / "pygments.css"
    assert static.read_text() == diff.stylesheet()
    assert ".highlight .k {" in static.read_text()


# The parser, on patches as git writes them.

PATCH = """\
diff --git a/old name.txt b/new name.txt
similarity index 90%
rename from old name.txt
rename to new name.txt
index 1111111..2222222 100644
--- a/old name.txt\t
+++ b/new name.txt\t
@@ -1,2 +1,2 @@ heading
 same
-before
+after
diff --git a/img.png b/img.png
new file mode 100644
index 0000000..3333333
Binary files /dev/null and b/img.png differ
diff --git a/gone.py b/gone.py
deleted file mode 100644
index 4444444..0000000
--- a/gone.py
+++ /dev/null
@@ -1 +0,0 @@
--- not a header
diff --git "a/t\\303\\251st.sh" "b/t\\303\\251st.sh"
old mode 100644
new mode 100755
index 5555555..6666666
--- "a/t\\303\\251st.sh"
+++ "b/t\\303\\251st.sh"
@@ -3,2 +3,3 @@
 x
-y
\\ No newline at end of file
+y
+z
@@ -10 +11 @@
-a
+b
"""


def test_the_parser_reads_renames_binaries_modes_and_hunks() -> None:
    renamed, image, gone, script = diff.parse(PATCH)
    assert (renamed.old_path, renamed.new_path, renamed.status) == (
        "old name.txt", "new name.txt", "renamed"
    )  # fmt: skip
    assert renamed.similarity == 90
    assert [(ln.kind, ln.old, ln.new, ln.text) for ln in renamed.lines] == [
        ("hunk", None, None, "@@ -1,2 +1,2 @@ heading"),
        ("ctx", 1, 1, "same"), ("del", 2, None, "before"), ("add", None, 2, "after"),
    ]  # fmt: skip
    assert (image.status, image.binary, image.old_path, image.path) == (
        "added", True, None, "img.png"
    )  # fmt: skip
    assert (gone.status, gone.new_path, gone.path, gone.removed) == (
        "deleted", None, "gone.py", 1
    )  # fmt: skip
    assert gone.lines[1].text == "-- not a header"  # a line, though it reads like `---`
    assert script.path == "tést.sh"
    assert (script.old_mode, script.new_mode, script.added, script.removed) == (
        "100644", "100755", 3, 2
    )  # fmt: skip
    kinds = [(ln.kind, ln.old, ln.new) for ln in script.lines]
    assert kinds == [
        ("hunk", None, None), ("ctx", 3, 3), ("del", 4, None),
        ("note", None, None), ("add", None, 4), ("add", None, 5),
        ("hunk", None, None), ("del", 10, None), ("add", None, 11),
    ]  # fmt: skip
    assert script.lines[3].text == "No newline at end of file"


def test_the_parser_caps_a_file_and_colouring_escapes_everything() -> None:
    body = "".join(f"+<b>{i}</b>\n" for i in range(30))
    patch = (
        "diff --git a/page.html b/page.html\nnew file mode 100644\n--- /dev/null\n"
        f"+++ b/page.html\n@@ -0,0 +1,30 @@\n{body}"
        "diff --git a/notes.unknownext b/notes.unknownext\n--- a/notes.unknownext\n"
        "+++ b/notes.unknownext\n@@ -1 +1 @@\n-<i>\n+</i>\n"
    )
    page, notes = diff.parse(patch, max_lines=11)
    assert (page.added, len(page.lines), page.truncated) == (30, 11, True)
    assert (notes.added, notes.removed, notes.truncated) == (1, 1, False)
    diff.colour([page, notes])
    assert page.lines[1].html == (
        '<span class="p">&lt;</span><span class="nt">b</span><span class="p">&gt;</span>'
        '0<span class="p">&lt;/</span><span class="nt">b</span><span class="p">&gt;</span>'
    )
    assert [str(ln.html) for ln in notes.lines[1:]] == ["&lt;i&gt;", "&lt;/i&gt;"]
    # A lone carriage return is a line end to pygments: that side is shown plain, in line.
    (odd,) = diff.parse(
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1,2 @@\n-a = 1\n"
        "+a = '\r<b>'\n+b = 2\n"
    )
    diff.colour([odd])
    assert '<span class="mi">1</span>' in odd.lines[1].html  # the old side is coloured
    assert [str(ln.html) for ln in odd.lines[2:]] == ["a = &#39;\r&lt;b&gt;&#39;", "b = 2"]
    # Past the budget, lines are escaped, not coloured.
    again = diff.parse(patch, max_lines=11)
    diff.colour(again, budget=5)
    assert str(again[0].lines[1].html) == "&lt;b&gt;0&lt;/b&gt;"
