"""One module per `ecac-bench` subcommand; each exposes ``register(subparsers)``."""
