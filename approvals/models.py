"""Tables of the approvals app (none yet; see the open issues)."""
