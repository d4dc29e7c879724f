"""`shopctl`: the developer's command line for a running Shop (local or compose)."""
