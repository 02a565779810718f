"""The request pages' forms: they parse and label fields; the rules (who may ask for what, amounts,
duplicates) are approvals.services', whose errors the views put beside the field they name."""

from __future__ import annotations

from typing import Any

from django import forms

from approvals import selectors
from approvals.models import MAX_PROJECT_NAME, MAX_REASON

WHAT = {
    "join": "Join a project",
    "new_project": "Create a project",
    "model": "Use a model",
}


def _reason_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=MAX_REASON,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": MAX_REASON}),
    )


class JoinForm(forms.Form):
    project = forms.ModelChoiceField(
        queryset=None, label="Project", empty_label="Choose a project…", help_text="Listed by business unit."
    )
    reason = _reason_field("Why do you need access?", "Your team, what you will build. Its owners read this.")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["project"]
        field.queryset = selectors.joinable_projects(user=user)
        field.label_from_instance = lambda p: f"{p.business_unit} / {p.name}"


class NewProjectForm(forms.Form):
    business_unit = forms.ModelChoiceField(queryset=None, label="Business unit", empty_label="Choose a unit…")
    name = forms.CharField(label="Project name", max_length=MAX_PROJECT_NAME, help_text="Unique within the unit.")
    reason = _reason_field("What is it for?", "The unit's managers decide; the project's spend is charged to the unit.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["business_unit"].queryset = selectors.requestable_units()


class ModelAccessForm(forms.Form):
    choice = forms.ChoiceField(label="Project and model", help_text="Only models your project may not use yet.")
    reason = _reason_field("Why this model?", "An administrator decides.")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = selectors.model_choices(user=user)
        self.fields["choice"].choices = [("", "Choose a model…")] + [
            (str(option.project), [(f"{option.project.pk}:{m.pk}", m.name) for m in option.models])
            for option in self.options
        ]

    def chosen(self) -> tuple[Any, Any]:
        """(project, model) of the valid choice."""
        project_id, model_id = (int(part) for part in self.cleaned_data["choice"].split(":"))
        for option in self.options:
            if option.project.pk == project_id:
                return option.project, next(m for m in option.models if m.pk == model_id)
        raise LookupError(self.cleaned_data["choice"])


class CreditForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, label="Project", empty_label="Choose a project…")
    # Text, not a DecimalField: the service's parser gives one message for every bad amount.
    amount = forms.CharField(
        label="Amount",
        max_length=40,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "placeholder": "50.00"}),
    )
    reason = _reason_field("Why do you need it?", "What the money is for and why now. The unit's managers read this.")

    def __init__(self, *args: Any, user: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = selectors.credit_projects(user=user)
        self.fields["amount"].help_text = f"In {currency}, up to two decimals."
        self.fields["amount"].label = f"Amount ({currency})"


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(required=False, max_length=MAX_REASON, widget=forms.Textarea(attrs={"rows": 2}))


class CancelForm(forms.Form):
    reason = forms.CharField(required=False, max_length=MAX_REASON)
