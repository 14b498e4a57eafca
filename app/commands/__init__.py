"""The `persais` subcommands, one module per topic; each has `register(commands)`."""
