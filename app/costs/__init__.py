"""Cost that never surprises: what each model call used and cost, per review and per job
(`ledger`), budgets that stop the work before the next call (`books`), and the Mechanic's
quote before a costly job (`quote`)."""
