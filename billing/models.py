"""Tables of the billing app (none yet; see the open issues)."""
