"""Small forms for the admin's action pages (a key's limits, rotation, a confirmation).

They check the shape of what was typed (whole numbers, ranges the management API also holds to);
the services check the rest and their ValidationFailed is put beside the field it names
(`add_service_error`), so the admin, the API and the portal refuse the same input alike.
"""

from __future__ import annotations

from django import forms

from gateway.errors import ValidationFailed

_LIMIT_HELP = "Empty: no limit."


def add_service_error(form: forms.Form, error: ValidationFailed, *, fields: dict[str, str] | None = None) -> None:
    """Show a service's refusal beside the field it names (FIELDS maps a service's field name to
    the form's), or above the form when it names none of the form's fields."""
    name = (fields or {}).get(error.field or "", error.field)
    form.add_error(name if name in form.fields else None, str(error))


class KeyLimitsForm(forms.Form):
    """A key's rate limits, as PATCH /api/v1/keys/{id} takes them (1 or more; empty removes one)."""

    rpm_limit = forms.IntegerField(label="Requests per minute", required=False, min_value=1, help_text=_LIMIT_HELP)
    tpm_limit = forms.IntegerField(label="Tokens per minute", required=False, min_value=1, help_text=_LIMIT_HELP)
    max_streams = forms.IntegerField(label="Concurrent streams", required=False, min_value=1, help_text=_LIMIT_HELP)


class RotateKeyForm(forms.Form):
    grace_days = forms.IntegerField(
        label="Grace period (days)",
        min_value=0,
        max_value=30,
        initial=1,
        help_text="How long the old key keeps working so its clients can move over (0 to 30 days; "
        "never past its own expiry).",
    )


class ConfirmForm(forms.Form):
    """A confirmation page's form: the POST itself is the confirmation."""

    confirm = forms.CharField(widget=forms.HiddenInput, initial="yes")
