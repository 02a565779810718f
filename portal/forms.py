"""The portal's forms: they parse and check what a person typed; the services decide the rest
(and their ValidationFailed lands beside the field it names, see `add_service_error`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django import forms

from gateway.errors import ValidationFailed

# What the services call a field -> the form field it is typed in.
SERVICE_FIELDS = {"expires_at": "expires_on", "allowed_models": "models", "grace": "grace"}


def add_service_error(form: forms.Form, error: ValidationFailed) -> None:
    """Put a service's refusal beside the field it names (or above the form)."""
    field = SERVICE_FIELDS.get(error.field or "", error.field)
    form.add_error(field if field in form.fields else None, str(error))


class KeyForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        help_text="Where the key is used, e.g. “checkout-web (production)”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "checkout-web"}),
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        help_text="Optional. The key stops working at the end of this day (UTC).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    models = forms.MultipleChoiceField(
        required=False,
        label="Models",
        help_text="None ticked: every model the project may use, now and later.",
        widget=forms.CheckboxSelectMultiple,
    )
    rpm_limit = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000, label="Requests / minute", help_text="Optional."
    )
    tpm_limit = forms.IntegerField(
        required=False, min_value=1, max_value=1_000_000_000, label="Tokens / minute", help_text="Optional."
    )
    max_streams = forms.IntegerField(
        required=False, min_value=1, max_value=10_000, label="Parallel streams", help_text="Optional."
    )

    def __init__(self, *args: object, model_names: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["models"].choices = [(name, name) for name in model_names]
        self.fields["expires_on"].widget.attrs["min"] = datetime.now(UTC).date().isoformat()

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name, so you recognise it later.")
        return name

    def clean_expires_on(self) -> date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < datetime.now(UTC).date():
            raise forms.ValidationError("Pick today or a later day.")
        return day

    @property
    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC) if day else None


GRACE_CHOICES = [("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("0", "No grace: stop it now")]
GRACE = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7), "0": timedelta(0)}


class RotateForm(forms.Form):
    grace = forms.ChoiceField(
        choices=GRACE_CHOICES,
        initial="1d",
        label="The old key keeps working for",
        help_text="Time to move your apps to the new key.",
    )

    @property
    def grace_period(self) -> timedelta:
        return GRACE[self.cleaned_data["grace"]]
