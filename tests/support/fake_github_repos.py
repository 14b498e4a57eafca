"""The real bare git repositories behind the fake GitHub: commits, diffs as GitHub lists them,
merges, file contents.

Everything is git plumbing on bare repositories (fast-import to commit, `diff --raw -z` and
`diff -p` for the files of a pull request, `merge-tree --write-tree` to merge), with a fixed
identity and no system or user configuration, so it behaves the same on a bare machine.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NAME, EMAIL = "Persais Fake GitHub", "fake-github@persais.invalid"
STATUSES = {
    "A": "added",
    "D": "removed",
    "M": "modified",
    "R": "renamed",
    "C": "copied",
    "T": "changed",
}
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class GitError(RuntimeError):
    pass


def git_env(home: Path) -> dict[str, str]:
    """An environment for git that reads no configuration but the repository's own."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": NAME,
        "GIT_AUTHOR_EMAIL": EMAIL,
        "GIT_COMMITTER_NAME": NAME,
        "GIT_COMMITTER_EMAIL": EMAIL,
        "LANG": "C",
    }


@dataclass(frozen=True)
class DiffLine:
    position: int  # lines below the file's first `@@` line (GitHub's `position`)
    kind: str  # " ", "+", "-" or "@" for a hunk header
    old: int | None  # line number in the old file
    new: int | None  # line number in the new file


@dataclass
class FileChange:
    """One entry of a pull request's files, as computed by `git diff`."""

    status: str
    filename: str
    previous_filename: str | None
    sha: str
    patch: str | None  # from the first `@@` line on; None for binary or content-less changes
    additions: int = 0
    deletions: int = 0
    lines: list[DiffLine] = field(default_factory=list)

    def locate(self, line: int, side: str) -> DiffLine | None:
        """The diff line a review comment on `line` of `side` (RIGHT new, LEFT old) is on."""
        for entry in self.lines:
            if entry.kind == "@":
                continue
            number = entry.new if side == "RIGHT" else entry.old
            if number == line:
                return entry
        return None

    def hunk_of(self, target: DiffLine) -> int:
        return sum(1 for e in self.lines if e.kind == "@" and e.position <= target.position)

    def diff_hunk(self, target: DiffLine) -> str:
        """From the header of the hunk holding `target` down to `target`, as GitHub quotes it."""
        assert self.patch is not None
        rows = self.patch.split("\n")
        start = max(
            e.position for e in self.lines if e.kind == "@" and e.position <= target.position
        )
        return "\n".join(rows[start : target.position + 1])


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: list[str]
    author: tuple[str, str, str]  # name, email, ISO date
    committer: tuple[str, str, str]
    message: str


class BareRepo:
    def __init__(self, path: Path, home: Path) -> None:
        self.path = path
        self.env = git_env(home)

    # --- running git ----------------------------------------------------------------

    def attempt(self, *args: str, stdin: bytes | None = None) -> tuple[int, bytes]:
        """Run git on this repository: (exit status, stdout)."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.path), "-c", "core.quotepath=off", *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise GitError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.returncode, done.stdout

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
        done = subprocess.run(
            ["git", "--git-dir", str(self.path), "-c", "core.quotepath=off", *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            raise GitError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def text(self, *args: str) -> str:
        return self.run(*args).decode().strip()

    # --- creating -------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, home: Path, default_branch: str, source: Path | None) -> BareRepo:
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            command = ["git", "init", "-q", "--bare", "-b", default_branch, str(path)]
        else:
            command = ["git", "clone", "-q", "--bare", str(source), str(path)]
        subprocess.run(command, env=git_env(home), check=True, capture_output=True)
        repo = cls(path, home)
        repo.run("symbolic-ref", "HEAD", f"refs/heads/{default_branch}")
        repo.run("config", "http.receivepack", "true")
        return repo

    # --- reading --------------------------------------------------------------------

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` (branch, sha, …) names, or None."""
        found = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return found.decode().strip() or None

    def branch(self, name: str) -> str | None:
        return self.resolve(f"refs/heads/{name}")

    def merge_base(self, a: str, b: str) -> str | None:
        return self.run("merge-base", a, b, check=False).decode().strip() or None

    def count(self, revisions: str) -> int:
        return int(self.text("rev-list", "--count", revisions))

    def blob(self, ref: str, path: str) -> tuple[str, bytes] | None:
        """(blob sha, bytes) of `path` at `ref`, or None when it is not a file there."""
        spec = f"{ref}:{path}"
        kind = self.run("cat-file", "-t", spec, check=False).decode().strip()
        if kind != "blob":
            return None
        return self.text("rev-parse", spec), self.run("cat-file", "blob", spec)

    def tree(self, ref: str, path: str) -> list[tuple[str, str, str, int, str]] | None:
        """The entries (mode, type, sha, size, name) of directory `path` at `ref`, or None."""
        spec = f"{ref}:{path}" if path else f"{ref}^{{tree}}"
        if self.run("cat-file", "-t", spec, check=False).decode().strip() != "tree":
            return None
        entries = []
        for entry in filter(None, self.run("ls-tree", "-l", "-z", spec).decode().split("\0")):
            info, name = entry.split("\t", 1)
            mode, kind, sha, size = info.split()
            entries.append((mode, kind, sha, int(size) if size.isdigit() else 0, name))
        return entries

    def commits(self, *revisions: str) -> list[CommitInfo]:
        """The commits of `revisions` (e.g. `base..head`), oldest first."""
        fields = "%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1e"
        out = self.run("log", "--reverse", f"--format={fields}", *revisions).decode()
        found = []
        for record in out.split("\x1e"):
            parts = record.strip("\n").split("\x1f")
            if len(parts) < 10:
                continue
            sha, tree, parents, an, ae, ad, cn, ce, cd, message = parts
            found.append(
                CommitInfo(
                    sha, tree, parents.split(), (an, ae, ad), (cn, ce, cd), message.rstrip("\n")
                )
            )
        return found

    # --- writing --------------------------------------------------------------------

    def commit(
        self,
        branch: str,
        changes: dict[str, str | bytes | None],
        *,
        message: str,
        parent: str | None,
        renames: dict[str, str] | None = None,
    ) -> str:
        """Commit `changes` (None deletes) and `renames` (old -> new) on top of `parent`."""
        modes = self._modes(parent) if parent else {}
        now = int(time.time())
        script = [
            f"commit refs/heads/{branch}".encode(),
            f"author {NAME} <{EMAIL}> {now} +0000".encode(),
            f"committer {NAME} <{EMAIL}> {now} +0000".encode(),
            *_data(message.encode()),
        ]
        if parent:
            script.append(f"from {parent}".encode())
        for old, new in (renames or {}).items():
            script.append(f"R {_quote(old)} {_quote(new)}".encode())
        for path, content in changes.items():
            if content is None:
                script.append(f"D {_quote(path)}".encode())
                continue
            data = content.encode() if isinstance(content, str) else content
            mode = modes.get(path, "100644")
            script.append(f"M {mode} inline {_quote(path)}".encode())
            script.extend(_data(data))
        script.append(b"")
        self.run("fast-import", "--quiet", stdin=b"\n".join(script))
        sha = self.branch(branch)
        assert sha is not None
        return sha

    def _modes(self, commit: str) -> dict[str, str]:
        out = self.run("ls-tree", "-r", "-z", commit).decode()
        modes = {}
        for entry in filter(None, out.split("\0")):
            info, path = entry.split("\t", 1)
            modes[path] = info.split()[0]
        return modes

    def update_ref(self, branch: str, new: str, old: str | None = None) -> None:
        self.run("update-ref", f"refs/heads/{branch}", new, *([old] if old else []))

    def delete_branch(self, branch: str) -> bool:
        if self.branch(branch) is None:
            return False
        self.run("update-ref", "-d", f"refs/heads/{branch}")
        return True

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The tree of merging `theirs` into `ours`, or None on a conflict."""
        status, out = self.attempt("merge-tree", "--write-tree", "--no-messages", ours, theirs)
        return out.decode().split("\n")[0].strip() if status == 0 else None

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = [arg for parent in parents for arg in ("-p", parent)]
        return self.text("commit-tree", tree, *args, "-m", message)

    def rebase(self, onto: str, upstream: str, head: str) -> str | None:
        """Replay `upstream..head` onto `onto` in a scratch worktree; None on a conflict."""
        with tempfile.TemporaryDirectory(prefix="fake-rebase-") as scratch:
            work = Path(scratch) / "work"
            self.run("worktree", "add", "-q", "--detach", str(work), onto)
            try:
                picked = subprocess.run(
                    ["git", "-C", str(work), "cherry-pick", "--allow-empty", f"{upstream}..{head}"],
                    env=self.env,
                    capture_output=True,
                    check=False,
                )
                if picked.returncode != 0:
                    return None
                return subprocess.run(
                    ["git", "-C", str(work), "rev-parse", "HEAD"],
                    env=self.env,
                    capture_output=True,
                    check=True,
                    text=True,
                ).stdout.strip()
            finally:
                self.run("worktree", "remove", "--force", str(work), check=False)
                self.run("worktree", "prune", check=False)

    # --- diffs as GitHub lists them -----------------------------------------------------

    def diff(self, old: str, new: str) -> list[FileChange]:
        """The files changed from `old` to `new`, with rename detection."""
        raw = self.run("diff", "--raw", "-z", "-M", "--no-abbrev", old, new).decode()
        patch = self.run("diff", "-M", "--no-color", "--no-ext-diff", old, new)
        sections = _sections(patch.decode(errors="replace"))
        changes = _raw_entries(raw)
        if len(sections) != len(changes):
            raise GitError(f"{len(changes)} raw entries but {len(sections)} patch sections")
        for change, section in zip(changes, sections, strict=True):
            _fill_patch(change, section)
        return changes


def _data(content: bytes) -> list[bytes]:
    return [f"data {len(content)}".encode(), content]


def _quote(path: str) -> str:
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _raw_entries(raw: str) -> list[FileChange]:
    """Parse `git diff --raw -z`: `:mode mode sha sha STATUS\\0path\\0[path\\0]`."""
    fields = raw.split("\0")
    changes = []
    i = 0
    while i < len(fields) and fields[i].startswith(":"):
        _, _, old_sha, new_sha, status = fields[i][1:].split(" ")
        letter = status[0]
        if letter in "RC":
            previous, filename, i = fields[i + 1], fields[i + 2], i + 3
        else:
            previous, filename, i = None, fields[i + 1], i + 2
        sha = old_sha if letter == "D" else new_sha
        changes.append(FileChange(STATUSES.get(letter, "modified"), filename, previous, sha, None))
    return changes


def _sections(patch: str) -> list[list[str]]:
    sections: list[list[str]] = []
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            sections.append([])
        elif sections:
            sections[-1].append(line)
    return sections


def _fill_patch(change: FileChange, section: list[str]) -> None:
    """Keep the hunks (from the first `@@`), count lines and number them as GitHub does."""
    start = next((i for i, line in enumerate(section) if line.startswith("@@")), None)
    if start is None:
        return  # binary, empty, a pure rename or a mode change: GitHub gives no patch
    rows = section[start:]
    while rows and rows[-1] == "":
        rows.pop()
    change.patch = "\n".join(rows)
    old = new = 0
    for position, row in enumerate(rows):
        header = HUNK.match(row)
        if header:
            old, new = int(header.group(1)), int(header.group(3))
            change.lines.append(DiffLine(position, "@", None, None))
        elif row.startswith("+"):
            change.lines.append(DiffLine(position, "+", None, new))
            change.additions, new = change.additions + 1, new + 1
        elif row.startswith("-"):
            change.lines.append(DiffLine(position, "-", old, None))
            change.deletions, old = change.deletions + 1, old + 1
        elif row.startswith(" "):
            change.lines.append(DiffLine(position, " ", old, new))
            old, new = old + 1, new + 1
