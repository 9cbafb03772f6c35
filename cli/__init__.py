"""The operator's client scripts: the `email-engine` command."""
