"""Commands in GitHub comments: `/review`, `/describe`, `/pause`, `/resume`, `/ignore`,
`/fix`, `/mechanic <request>`, `/mechanic fix <request>`, `/ask <question>`, `/help`.

A command is the comment's first line; quoted lines (`> /review`) are not commands, and
neither is a slash word Persais does not know (people write paths and dates)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMAND = re.compile(
    r"^/(review|describe|pause|resume|ignore|fix|mechanic|ask|help)(?:@[\w-]+)?(?:\s+(.*))?$",
    re.S | re.I,
)
# GitHub's reactions are eight fixed emoji (no 🔧), and no webhook tells of a reaction: a
# reply that is only 🔧 in a review thread is taken as `/fix`.
WRENCH = "\N{WRENCH}"

HELP = """\
**Persais** takes these commands from people who may write to this repository:

- `/review`: review this pull request again (at its current head)
- `/describe`: write (or bring up to date) the description comment of this pull request
- `/pause` and `/resume`: stop and restart the automatic reviews of this pull request
- `/ignore` (a reply in a thread of a Persais review comment, or 👎 on the comment): not
  this finding again on this pull request
- `/fix` (a reply in such a thread, or a reply that is only 🔧): apply the comment's
  suggestion as one commit on the pull request's branch (a patch, where Persais may not push)
- `/mechanic <request>`: a Mechanic job on the home repository, for example
  `/mechanic Create an agent Echo that repeats my messages`; progress shows in this thread
- `/mechanic fix <request>`: on a pull request of the home repository, Aider changes its
  branch as asked, the change is validated and pushed to the same branch
- `/ask <question>`: a question about the home repository's code, answered with
  `path:line` references from Persais's index of it
- `/help`: this list

Replying to one of Persais's review comments that it is wrong ("that's wrong because …")
teaches it a lesson for that file: later reviews take it into account.

Every pull request is also reviewed when it is opened and when new commits arrive.
Configure the review in `.github/persais.yml` on the default branch."""


@dataclass(frozen=True)
class Command:
    name: str  # review | describe | pause | resume | ignore | fix | mechanic | mechanic-fix
    # | ask | help
    argument: str = ""


def parse(body: str) -> Command | None:
    text = body.strip().replace("\r\n", "\n")
    if text.replace("\N{VARIATION SELECTOR-16}", "") == WRENCH:
        return Command("fix")
    if not text.startswith("/"):
        return None
    first, _, rest = text.partition("\n")
    match = _COMMAND.match(first.strip())
    if match is None:
        return None
    name = match.group(1).lower()
    argument = ((match.group(2) or "") + ("\n" + rest if rest else "")).strip()
    if name == "mechanic" and re.match(r"fix\b", argument, re.I):
        return Command("mechanic-fix", argument[3:].strip())
    return Command(name, argument)
