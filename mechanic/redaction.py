"""Secrets in text: find them, and cut them out before the text goes anywhere else.

Repository text leaves Persais in three ways: to the embeddings endpoint (every chunk of an
indexed repository), to the model (review diffs, `/ask` excerpts) and into comments and
chats (`/ask` answers). A credential committed by mistake must not travel further than the
commit that leaked it. `redact` replaces each secret with `[redacted: <kind>]` and keeps
the text's line count, so `path:line` references stay true.

Found are: private key blocks, tokens whose shape is their provider's (GitHub, AWS, Slack,
OpenAI, Anthropic, Google, Stripe, Telegram, JWTs), passwords inside URLs, and quoted values
assigned to names that say secret (`api_key = "…"`) when the value looks random rather than
like a placeholder. And the values Persais itself was configured with, wherever they occur.
High precision over recall: a redacted line that held no secret costs an excerpt a word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KNOWN_MIN = 8  # a configured value shorter than this is not searched for (too common)

# (kind, strings one of which it contains, shape). Python's `re` scans at a few tens of MB/s
# per pattern; `in` at GB/s: a pattern runs only over a text that has one of its strings.
_SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("private key", ("PRIVATE KEY",), re.compile(
        r"-----BEGIN[A-Z ]{0,30} PRIVATE KEY(?: BLOCK)?-----"
        r".*?(?:-----END[A-Z ]{0,30} PRIVATE KEY(?: BLOCK)?-----|\Z)", re.S)),
    ("GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_\w{60,255})\b")),
    ("AWS access key", ("AKIA", "ASIA"), re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("Slack token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("API key", ("sk-",), re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}")),
    ("Google API key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe key", ("k_live_",), re.compile(r"\b[rs]k_live_[0-9A-Za-z]{24,}\b")),
    ("Telegram bot token", (":AA",), re.compile(r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b")),
    ("JWT", ("eyJ",),
     re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
)  # fmt: skip
# scheme://user:password@host: the password only.
_URL_PASSWORD = re.compile(r"://[^\s:/@'\"]+:([^\s@/'\"]{3,})@")
# name = "value", name: 'value', "name": "value", NAME=value (env files): the word that
# says secret is looked for in the lower-cased text, the rest matched from where it ends.
_SECRET_WORD = re.compile(
    r"secret|token|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential"
)
_ASSIGNED = re.compile(
    r"""[\w.-]*["']?[ \t]*(?::|=|:=)[ \t]*
    (?:"([^"\s]{12,200})"|'([^'\s]{12,200})'|([^\s"'#,;]{16,200})$)""",
    re.M | re.X,
)
_PLACEHOLDER = re.compile(
    r"\$\{|\{\{|<|>|\.\.\.|xxx|your[_-]|example|changeme|placeholder|dummy|redacted|"
    r"^\*+$|^\{.*\}$|environ|getenv|settings\.|secrets\.",
    re.I,
)

_WORDS = frozenset({"pass", "password", "secret", "postgres", "root", "admin", "user"})


@dataclass(frozen=True)
class Secret:
    kind: str
    start: int
    end: int

    def line(self, text: str) -> int:
        """The 1-based line of `text` the secret starts on."""
        return text.count("\n", 0, self.start) + 1


def find(text: str, known: Iterable[str] = ()) -> list[Secret]:
    """The secrets in `text`, in order, none overlapping another."""
    found: list[Secret] = []
    for kind, strings, shape in _SHAPES:
        if any(s in text for s in strings):
            found += [Secret(kind, m.start(), m.end()) for m in shape.finditer(text)
                      if not _PLACEHOLDER.search(m.group())]  # AKIAIOSFODNN7EXAMPLE  # fmt: skip
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            if not _PLACEHOLDER.search(m.group(1)) and m.group(1).lower() not in _WORDS:
                found.append(Secret("password in a URL", m.start(1), m.end(1)))
    for m in _assignments(text):
        group = next(g for g in (1, 2, 3) if m.group(g) is not None)
        if _random(m.group(group)):
            found.append(Secret("secret value", m.start(group), m.end(group)))
    for value in {v for v in known if len(v) >= KNOWN_MIN}:
        for line in value.splitlines() if "\n" in value else [value]:
            if len(line.strip()) < KNOWN_MIN or line.startswith("-----"):
                continue  # a PEM's armour lines are no secret; its body lines are
            start = text.find(line)
            while start != -1:
                found.append(Secret("configured secret", start, start + len(line)))
                start = text.find(line, start + len(line))
    return _disjoint(found)


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every secret replaced by `[redacted: <kind>]`; as many lines as before."""
    return cut(text, known)[0]


def cut(text: str, known: Iterable[str] = ()) -> tuple[str, list[Secret]]:
    """`redact`, and the secrets it cut out (one scan for both)."""
    secrets = find(text, known)
    if not secrets:
        return text, []
    parts: list[str] = []
    at = 0
    for secret in secrets:
        lines = text.count("\n", secret.start, secret.end)
        parts += [text[at : secret.start], f"[redacted: {secret.kind}]", "\n" * lines]
        at = secret.end
    parts.append(text[at:])
    return "".join(parts), secrets


def _assignments(text: str) -> Iterator[re.Match[str]]:
    lower = text.lower()
    if len(lower) != len(text):  # a character whose lower case is longer: no shortcut
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    for word in _SECRET_WORD.finditer(lower):
        found = _ASSIGNED.match(text, word.end())
        if found is not None:
            yield found


def _random(value: str) -> bool:
    """A value that looks generated (a key), not written (a placeholder, a name, a path)."""
    if _PLACEHOLDER.search(value) or value.startswith(("/", "./", "../", "~")) or "://" in value:
        return False
    if not (re.search(r"[A-Za-z]", value) and re.search(r"\d", value)):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.2


def _disjoint(found: list[Secret]) -> list[Secret]:
    """Leftmost first; of two overlapping secrets the longer one, then the first found."""
    kept: list[Secret] = []
    for secret in sorted(found, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and secret.start < kept[-1].end:
            if secret.end > kept[-1].end:  # overlapping further: one span covers both
                kept[-1] = Secret(kept[-1].kind, kept[-1].start, secret.end)
            continue
        kept.append(secret)
    return kept
