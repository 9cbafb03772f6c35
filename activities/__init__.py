"""Every side effect: database, SSH, DNS, HTTP, Telegram. Thin wrappers around pure functions."""
