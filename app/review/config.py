"""`.github/persais.yml`: what a repository asks of the reviewer and of memory.

Read from the default branch only, never from the pull request's head: a pull request must
not be able to switch its own review off. A file that does not parse or does not fit gives
the defaults and a problem to tell the repository about.

```yaml
review:
  enabled: true            # false: no reviews on this repository (commands still work)
  describe: true           # false: no automatic description comment (`/describe` still works)
  skip: ["docs/**", "*.lock"]   # paths the reviewer leaves alone (fnmatch patterns)
  severity_floor: info     # info | warning | error: findings below it go to the digest
  min_confidence: 0.6      # 0..1: model findings less sure than this go to the digest
  paths:                   # per-path rules; the first entry whose glob matches wins
    - path: "app/db/**"
      instructions: "Every query is parameterised; migrations are append-only."
    - path: "vendor/**"
      skip: true           # like review.skip
memory:
  index: false             # true: Persais indexes this repository too (the home one always)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.review.findings import Severity

CONFIG_PATH = ".github/persais.yml"
MAX_BYTES = 64 * 1024


class PathRule(BaseModel):
    """One entry of `review.paths`: what the reviewer is told about files matching `path`
    (repository guidance, from the default branch), or `skip: true` to leave them alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=500)
    instructions: str = Field(default="", max_length=4000)
    skip: bool = False

    def matches(self, path: str) -> bool:
        return fnmatchcase(path, self.path)


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    describe: bool = True
    skip: tuple[str, ...] = Field(default=(), max_length=200)
    severity_floor: Severity = "info"
    min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    paths: tuple[PathRule, ...] = Field(default=(), max_length=100)

    def rule_for(self, path: str) -> PathRule | None:
        """The first `review.paths` entry matching `path` (the first that matches wins)."""
        return next((rule for rule in self.paths if rule.matches(path)), None)

    def skips(self, path: str) -> bool:
        if any(fnmatchcase(path, pattern) for pattern in self.skip):
            return True
        rule = self.rule_for(path)
        return rule is not None and rule.skip


class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: bool = False


class RepositoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    review: ReviewConfig = ReviewConfig()
    memory: MemoryConfig = MemoryConfig()


@dataclass(frozen=True)
class Loaded:
    config: RepositoryConfig
    problem: str | None = None  # why the file was not used (the defaults were)


def parse(text: str | None) -> Loaded:
    """The configuration in `text` (None: there is no file)."""
    if text is None:
        return Loaded(RepositoryConfig())
    if len(text.encode()) > MAX_BYTES:
        return Loaded(RepositoryConfig(), f"{CONFIG_PATH} is larger than {MAX_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        return Loaded(RepositoryConfig(), f"{CONFIG_PATH} is not valid YAML{at}")
    if data is None:
        return Loaded(RepositoryConfig())
    try:
        return Loaded(RepositoryConfig.model_validate(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'the file'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return Loaded(RepositoryConfig(), f"{CONFIG_PATH} does not fit: {problems}")
