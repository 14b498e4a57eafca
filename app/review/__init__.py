"""The pull-request reviewer: static findings (the Mechanic's policy, ruff) and the model's,
pinned to the lines of the diff, posted as one review with a check run."""
