"""Forms of billing's admin actions: granting credit to a project and adjusting its balance.

The amount is checked for shape here (a number with at most two decimals, in BILLING_CURRENCY);
billing.services checks it again with the same rules as the management API and the approvals flow,
and its refusal is shown beside the field it names. Each form carries an idempotency key made when
the form was shown, so a double click or a resent POST writes one ledger entry.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.conf import settings


def _amount_field(label: str, help_text: str, **kwargs: object) -> forms.DecimalField:
    return forms.DecimalField(
        label=f"{label} ({settings.BILLING_CURRENCY})",
        max_digits=14,
        decimal_places=2,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        **kwargs,  # type: ignore[arg-type]
    )


class _LedgerForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Kept in the ledger with your name; the project's members see it.",
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("initial", {"idempotency_key": uuid.uuid4().hex})  # type: ignore[arg-type]
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


class GrantCreditForm(_LedgerForm):
    amount = _amount_field(
        "Amount", "One-off credit added to the balance; it carries over from month to month.", min_value=Decimal("0.01")
    )
    field_order = ["amount", "reason"]


class AdjustmentForm(_LedgerForm):
    amount = _amount_field(
        "Amount",
        "Positive adds to the balance (a refund), negative takes from it (a charge the gateway could not see).",
    )
    field_order = ["amount", "reason"]

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("An adjustment of zero changes nothing.")
        return amount
