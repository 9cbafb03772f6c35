"""Short Python client scripts an operator would write (README "Python client"); each runs as
`python examples/NAME.py --help` and talks to the Temporal server and database in the settings."""
