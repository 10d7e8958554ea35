# The eval stage's rules (filled in by its issue; see docs/contracts.md).
