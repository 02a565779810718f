"""Reads of access and credit requests (the approvals workflow fills this in)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser


def pending_decision_count(*, user: AbstractBaseUser) -> int:
    """How many pending requests wait for this user's decision."""
    return 0
