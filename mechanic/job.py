"""One Mechanic job: request → plan → scaffold → Aider → validate (repair) → pull request.

Everything outside comes in through `JobDeps` (forge, model, Aider, a repository lock, a
place to report progress), so the pipeline runs the same under the chat, the CLI and tests.
"""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from mechanic import conventions
from mechanic.aider import AiderModel, AiderRun, run_aider
from mechanic.forge import Forge, PullRequest
from mechanic.guidance import Guidance
from mechanic.metering import spent
from mechanic.plan import Clarification, Model, Plan, make_plan, prompts
from mechanic.scaffold import Example, ScaffoldRequest, render, write
from mechanic.validate import Report, validate
from mechanic.workspace import Workspace, git

REPAIR_ROUNDS = 3
BASE = "main"  # the home repository's default branch: every job's worktree starts there
Progress = Callable[[str], Awaitable[None]]
# What a change in a worktree (its HEAD against the base branch) adds to or widens in the
# agents' grants, one line each ("weather: http → api.open-meteo.com (new)"): the app knows
# the release in service, the Mechanic does not.
GrantLines = Callable[[Path, str], Awaitable[list[str]]]


@dataclass(frozen=True)
class JobDeps:
    forge: Forge
    model: Model
    aider_bin: Path
    aider_model: AiderModel
    templates: Path
    jobs_root: Path  # under PERSAIS_HOME
    lock: Callable[[], AbstractAsyncContextManager[None]]  # one job per repository at a time
    progress: Progress
    aider_time_limit: float = 300.0
    check_time_limit: float = 120.0
    use_aider: bool = True  # False: the template alone (no model configured)
    guidance: Guidance = field(default_factory=Guidance)  # memory: past jobs, lessons
    grants: GrantLines | None = None  # None: the pull request body says nothing of grants


@dataclass
class JobOutcome:
    status: str  # "opened" | "question" | "failed" | "refused"
    message: str  # for the person
    plan: Plan | None = None
    pull_request: PullRequest | None = None
    rounds: int = 0
    report: Report | None = None
    aider_runs: list[AiderRun] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # what the change touched
    diff_summary: str = ""  # `git diff --shortstat` of the change

    @property
    def cost(self) -> float:
        return sum(run.cost for run in self.aider_runs)


async def run_job(
    job_id: str, request: str, deps: JobDeps, plan: Plan | None = None, *,
    others_confirmed: bool = False,
) -> JobOutcome:  # fmt: skip
    """`others_confirmed`: the person said yes to the plan's other agents (`also_changes`);
    until then a plan that names any is a question, and nothing runs."""
    deps = await with_conventions(deps)
    if plan is None:
        await deps.progress("plan")
        planned = await make_plan(request, deps.model, deps.guidance)
        if isinstance(planned, Clarification):
            return JobOutcome("question", planned.question)
        plan = planned
    confirmation = plan.confirmation()
    if confirmation is not None and not others_confirmed:
        return JobOutcome("question", confirmation, plan=plan)
    outcome = JobOutcome("failed", "", plan=plan)
    async with deps.lock():
        workspace = await Workspace.create(
            await deps.forge.repository(), deps.jobs_root, job_id=job_id, slug=plan.name,
            base=BASE,
        )  # fmt: skip
        published = False
        try:
            await _build(job_id, request, plan, workspace, deps, outcome)
            published = outcome.status == "opened"
        finally:
            await workspace.remove(keep_branch=published)
    return outcome


async def _code(
    job_id: str, plan: Plan, workspace: Workspace, deps: JobDeps, problems: list[str], attempt: int
) -> AiderRun:
    await deps.progress("code" if attempt == 0 else f"repair {attempt}/{REPAIR_ROUNDS}")
    # The other agents' files that exist (Aider would create the others, empty).
    files = [f for f in plan.files if (workspace.path / f).exists()]
    return await run_aider(
        deps.aider_bin, deps.aider_model, workspace.path, deps.jobs_root / job_id,
        coding_prompt(plan, files, problems, deps.guidance), files,
        read_only=[deps.templates / "README.md"],
        time_limit=deps.aider_time_limit,
    )  # fmt: skip


def coding_prompt(plan: Plan, files: list[str], problems: list[str], guidance: Guidance) -> str:
    """Aider's instructions for a new agent or tool (`problems`: the last round's, if any)."""
    return prompts().get_template("aider.md").render(
        kind=plan.kind, name=plan.name, command=plan.command, description=plan.description,
        files=files, behaviour=plan.behaviour, problems=problems,
        permissions=["modbus"] if plan.kind == "modbus_tool" else [], guidance=guidance,
        also_changes=plan.also_changes,
    )  # fmt: skip


async def with_conventions(deps: JobDeps) -> JobDeps:
    """`deps` whose guidance carries the home repository's conventions (AGENTS.md or the
    like), read from the base branch the job starts from, never from a pull request's."""
    if deps.guidance.conventions is not None:
        return deps
    found = await conventions.read(await deps.forge.repository(), BASE)
    return replace(deps, guidance=replace(deps.guidance, conventions=found))


async def _build(
    job_id: str, request: str, plan: Plan, workspace: Workspace, deps: JobDeps, outcome: JobOutcome
) -> None:
    await deps.progress("scaffold")
    options: dict[str, object] = (
        {"device_id": plan.device.unit, "device_host": plan.device.host,
         "device_port": plan.device.port}
        if plan.device is not None else {}
    )  # fmt: skip
    scaffold = ScaffoldRequest(
        plan.kind, plan.name, plan.command, plan.description,
        examples=[Example(b.say, b.expect) for b in plan.behaviour], options=options,
    )  # fmt: skip
    write(workspace.path, render(deps.templates, scaffold))

    async def code(problems: list[str], attempt: int) -> AiderRun | None:
        if not deps.use_aider:
            return None
        return await _code(job_id, plan, workspace, deps, problems, attempt)

    rounds = REPAIR_ROUNDS if deps.use_aider else 0
    problems = await _until_valid(
        plan.name, workspace, deps, outcome, code, rounds, others=plan.also_changes
    )
    if outcome.status == "refused":
        return
    if problems:
        why = (
            f"Validation still failed after {REPAIR_ROUNDS} repair rounds"
            if deps.use_aider
            else "The template alone did not validate"
        )
        outcome.message = why + ":\n" + "\n".join(problems[:10])
        return

    changed = await workspace.changed_files()
    await deps.progress("pull request")
    head = await workspace.commit(
        f"Add {plan.kind} {plan.name}: {plan.description}\n\nMechanic job {job_id}"
    )
    grants = await deps.grants(workspace.path, workspace.base) if deps.grants else None
    outcome.pull_request = await deps.forge.publish(
        job_id=job_id, branch=workspace.branch, head_sha=head, base=workspace.base,
        title=f"Add {plan.kind} /{plan.command}: {plan.description}",
        body=pull_request_body(job_id, request, plan, outcome, changed, grants, spent()),
    )  # fmt: skip
    outcome.status = "opened"
    outcome.message = (
        f"Pull request #{outcome.pull_request.number} is open: {outcome.pull_request.url}"
    )


Coder = Callable[[list[str], int], Awaitable[AiderRun | None]]


async def _until_valid(
    agent: str, workspace: Workspace, deps: JobDeps, outcome: JobOutcome, code: Coder,
    rounds: int, *, others: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """Code, validate, repair: until the change validates (returns no problems) or the
    rounds run out (returns the last problems). A policy refusal stops at once. `others`:
    the agents besides `agent` the change may edit or remove."""
    problems: list[str] = []
    for attempt in range(rounds + 1):
        outcome.rounds = attempt
        run = await code(problems, attempt)
        if run is not None:
            outcome.aider_runs.append(run)
        await deps.progress(f"validate (round {attempt + 1}/{rounds + 1})")
        changed = await workspace.changed_files()
        outcome.files, outcome.diff_summary = changed, await workspace.diff_summary()
        report = await validate(
            workspace.path, changed, agent, others=others, time_limit=deps.check_time_limit
        )
        outcome.report = report
        if report.policy_refused:
            outcome.status = "refused"
            outcome.message = "The change broke the rules and was refused:\n" + "\n".join(
                report.problems[:10]
            )
            return report.problems
        if report.ok:
            return []
        problems = report.problems[:20]
        if run is not None and run.timed_out:
            problems.insert(0, f"Aider ran out of time ({deps.aider_time_limit:.0f} s).")
    return problems


async def run_fix(job_id: str, request: str, deps: JobDeps, number: int) -> JobOutcome:
    """`/mechanic fix`: Aider changes an open pull request's branch as asked; the result is
    validated like any Mechanic change and pushed to the same branch."""
    outcome = JobOutcome("failed", "")
    deps = await with_conventions(deps)  # the base's: the pull request's branch is not read
    async with deps.lock():
        pull = await deps.forge.pull_request(number)
        workspace = await Workspace.attach(
            await deps.forge.repository(), deps.jobs_root, job_id=job_id, branch=pull.branch
        )
        try:
            await _fix(job_id, request, pull, workspace, deps, outcome)
        finally:
            await workspace.remove(keep_branch=True)  # the branch is the pull request's
    return outcome


async def _fix(
    job_id: str, request: str, pull: PullRequest, workspace: Workspace, deps: JobDeps,
    outcome: JobOutcome,
) -> None:  # fmt: skip
    changed = await workspace.changed_files()
    agents = sorted({p.split("/")[2] for p in changed if p.startswith("dynamic/agents/")
                     and p.count("/") >= 3})  # fmt: skip
    if len(agents) != 1:
        outcome.status = "refused"
        outcome.message = (
            f"Pull request #{pull.number} does not change exactly one agent under "
            "dynamic/agents/ (it changes: " + (", ".join(agents) or "none") + "); "
            "/mechanic fix works on Mechanic changes."
        )
        return
    name = agents[0]
    files = [p for p in changed if p.endswith((".py", ".toml"))]
    before = (await git_head(workspace)).strip()

    async def code(problems: list[str], attempt: int) -> AiderRun:
        await deps.progress("code" if attempt == 0 else f"repair {attempt}/{REPAIR_ROUNDS}")
        instructions = prompts().get_template("fix.md").render(
            name=name, request=request, files=files, problems=problems,
            permissions=_manifest_permissions(workspace, name), guidance=deps.guidance,
        )  # fmt: skip
        return await run_aider(
            deps.aider_bin, deps.aider_model, workspace.path, deps.jobs_root / job_id,
            instructions, files, read_only=[deps.templates / "README.md"],
            time_limit=deps.aider_time_limit,
        )  # fmt: skip

    problems = await _until_valid(name, workspace, deps, outcome, code, REPAIR_ROUNDS)
    if outcome.status == "refused":
        return
    if problems:
        outcome.message = f"Validation still failed after {REPAIR_ROUNDS} repair rounds:\n" + (
            "\n".join(problems[:10])
        )
        return
    if not await workspace.has_changes():
        outcome.status = "failed"
        outcome.message = "Aider changed nothing; the pull request is as it was."
        return
    await deps.progress("push")
    head = await workspace.commit(f"Fix {name}: {request[:60]}\n\nMechanic job {job_id}")
    pushed = PullRequest(pull.number, pull.url, pull.branch, head)
    await deps.forge.update(pushed)
    outcome.pull_request = pushed
    outcome.status = "opened"
    outcome.message = (
        f"Pushed {head[:7]} (was {before[:7]}) to pull request #{pull.number}: {pull.url}"
    )


async def git_head(workspace: Workspace) -> str:

    return await git("rev-parse", "HEAD", cwd=workspace.path)


def _manifest_permissions(workspace: Workspace, name: str) -> list[str]:

    try:
        data = tomllib.loads(
            (workspace.path / "dynamic" / "agents" / name / "agent.toml").read_text()
        )
    except (OSError, tomllib.TOMLDecodeError):
        return []
    granted = data.get("permissions", {})
    if isinstance(granted, dict):  # [permissions.http] …: the capability names
        return sorted(str(name) for name in granted)
    return [p for p in granted if isinstance(p, str)] if isinstance(granted, list) else []


def pull_request_body(
    job_id: str, request: str, plan: Plan, outcome: JobOutcome, changed: list[str],
    grants: list[str] | None = None, spend: str | None = None,
) -> str:  # fmt: skip
    """`spend`: what the job's model calls cost so far (planning and Aider), when counted."""
    lines = [
        "## Request", "", "> " + request.replace("\n", "\n> "), "",
        "## Plan", "", f"- kind: {plan.kind}", f"- name: {plan.name}, command: /{plan.command}",
        f"- {plan.description}",
        *([f"- also edits or removes: {', '.join(plan.also_changes)} (the person said yes)"]
          if plan.also_changes else []),
        "", "Behaviour checked by the generated test:", "",
        *[f"- `/{plan.command} {b.say}` → `{b.expect}`" for b in plan.behaviour], "",
        "## Files", "", *[f"- `{path}`" for path in changed], "",
        *_grants_section(grants),
        "## Validation", "", _validation(outcome), "",
        "## Aider", "",
        f"{len(outcome.aider_runs)} run(s), "
        f"{sum(r.tokens_sent for r in outcome.aider_runs)} tokens sent, "
        f"{sum(r.tokens_received for r in outcome.aider_runs)} received"
        # Aider prices a call only when it knows the model's price: no figure is no cost said.
        + (f", cost ${outcome.cost:.4f} (Aider's figure)" if outcome.cost else ""),
        *(["", "## Spend", "", f"{spend} (planning and Aider, for this pull request)"]
          if spend else []),
        "", f"Mechanic job `{job_id}`",
    ]  # fmt: skip
    return "\n".join(lines)


def _validation(outcome: JobOutcome) -> str:
    report = outcome.report
    steps = ", ".join(f"{k} {v}" for k, v in (report.steps if report else {}).items())
    unsealed = report is not None and not report.sandboxed
    where = "; unsandboxed: there was no bubblewrap" if unsealed else ""
    return f"{steps} (repair rounds: {outcome.rounds}){where}"


def _grants_section(grants: list[str] | None) -> list[str]:
    """What the release would add to or widen in the agents' grants, against the release
    in service: an admin must deploy it if anything."""
    if grants is None:
        return []
    if not grants:
        return ["## Grants", "", "grants: none new", ""]
    listed = [f"- {line}" for line in grants]
    return ["## Grants", "", *listed, "", "Adding or widening a grant needs an admin's Deploy.", ""]
