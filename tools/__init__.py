"""Project maintenance scripts (not part of the `ccl` package): `python -m tools.<name>`."""
