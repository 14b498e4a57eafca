"""The Mechanic's jobs, Persais's side of them: started from a conversation, run by a
worker, told back. (The Mechanic itself, the library that writes the code, is the top-level
`mechanic/` package; this one composes it from settings and runs it for the service.)

- `service.py` — what the chat asks for (the agents' "mechanic" capability): start a job
  (recorded and queued in one transaction), confirm a template-only offer, `/abort`,
  withdraw a pull request.
- `runner.py` — what a worker does with a queued job: plan once, build, watch for /abort,
  record the outcome, and tell the conversation — the pull request with [Deploy] [Abort]
  [View PR], asked as an approval so the buttons outlive restarts.
- `progress.py` — the job's one progress message, edited in place through the outbox.
- `records.py` — the `jobs` rows both sides read.
- `composed.py` — the Mechanic composed from settings (forge, model, Aider, repository
  lock), and the `jobs` rows `persais mechanic` writes.
- `home_repository.py` — whether the Mechanic has somewhere to commit (no checkout, as in the
  image, and no `PERSAIS_HOME_REPO`: one line, before anything starts).

Importing the package loads none of them: the modules that need one import it (the
composition pulls in the Mechanic library, which the web process never needs).

A job is durable. `jobs.attempts` counts runs: a worker that dies mid-job (SIGKILL) leaves
its queue job stalled; the sweeper hands it to a worker again, and the run starts over in a
fresh worktree, saying so in the chat. The forge opens at most one pull request per job, so
a run that died after publishing finds its pull request again. After `MAX_RUNS` the job
fails, and the person is told.
"""
