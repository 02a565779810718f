"""Form fields for the structured values the admin used to show as raw JSON text boxes.

- OrderedNamesField: an ordered picker (a model's fallbacks: first, second, ... in order).
- NumbersField: a few number boxes (a budget's alert thresholds).
- CheckActionsField: a table of check x action (a guardrail policy's input and output checks).
- LinesField: a text box with one term a line (deny lists, denied betas).

They only give the value its shape (a list, a dict); the services that save it check it (unknown
models, actions a check cannot take, thresholds out of range, regexes that do not compile) and the
admin puts their message beside the field. Each also accepts the JSON text the management API
takes, posted under the field's own name, so a script that posted the old text boxes still works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


def _legacy_json(data: Any, name: str, subnames: Sequence[str]) -> tuple[bool, Any]:
    """(True, the text) when the form was posted the old way: one JSON text under NAME and none
    of the structured inputs."""
    if name in data and not any(sub in data for sub in subnames):
        return True, data.get(name)
    return False, None


def _parse_json(text: str, kind: type, message: str) -> Any:
    try:
        value = json.loads(text) if text.strip() else kind()
    except ValueError:
        raise forms.ValidationError(message, code="invalid") from None
    if not isinstance(value, kind):
        raise forms.ValidationError(message, code="invalid")
    return value


# --- an ordered picker ---


class OrderedPickerWidget(forms.MultiWidget):
    """SLOTS drop-downs, read in order; empty ones are skipped."""

    def __init__(self, slots: int = 4, choices: Sequence[tuple[str, str]] = ()) -> None:
        self.slots = slots
        super().__init__([forms.Select(choices=[("", "—"), *choices]) for _ in range(slots)])

    def set_choices(self, choices: Sequence[tuple[str, str]], *, slots: int) -> None:
        self.slots = slots
        self.widgets = [forms.Select(choices=[("", "—"), *choices]) for _ in range(slots)]

    def decompress(self, value: Any) -> list[Any]:
        names = _as_list(value)
        return [*names, *[""] * (self.slots - len(names))][: max(self.slots, len(names))]

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        legacy, text = _legacy_json(data, name, [f"{name}_{i}" for i in range(len(self.widgets))])
        return text if legacy else [data.get(f"{name}_{i}", "") for i in range(len(self.widgets))]


class OrderedNamesField(forms.Field):
    widget = OrderedPickerWidget

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = _parse_json(value, list, "Pick the names in order.")
        names = [str(name).strip() for name in value or [] if name not in (None, "")]
        return list(dict.fromkeys(names))


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return []
    return list(value) if isinstance(value, list | tuple) else []


# --- a few numbers ---


class NumbersWidget(forms.MultiWidget):
    def __init__(self, slots: int = 5, attrs: dict[str, Any] | None = None) -> None:
        self.slots = slots
        attrs = {"step": "1", "style": "width: 6em", **(attrs or {})}
        super().__init__([forms.NumberInput(attrs=attrs) for _ in range(slots)])

    def decompress(self, value: Any) -> list[Any]:
        numbers = _as_list(value)
        return [*numbers, *[None] * (self.slots - len(numbers))]

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        numbers = _as_list(value) if not isinstance(value, list) else value
        if len(numbers) > len(self.widgets):  # room for every stored value, and one more
            self.widgets = [forms.NumberInput(attrs=self.widgets[0].attrs) for _ in range(len(numbers) + 1)]
            self.slots = len(self.widgets)
        return super().get_context(name, value, attrs)

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        legacy, text = _legacy_json(data, name, [f"{name}_{i}" for i in range(len(self.widgets))])
        return text if legacy else [data.get(f"{name}_{i}", "") for i in range(len(self.widgets))]


class NumbersField(forms.Field):
    """Whole numbers, in the order typed; empty boxes are skipped."""

    widget = NumbersWidget

    def to_python(self, value: Any) -> list[int]:
        if isinstance(value, str):
            value = _parse_json(value, list, "Enter whole numbers.")
        numbers: list[int] = []
        for item in value or []:
            if item in (None, ""):
                continue
            if isinstance(item, bool):
                raise forms.ValidationError("Enter whole numbers.", code="invalid")
            try:
                number = int(str(item).strip())
            except ValueError:
                raise forms.ValidationError(f"{item!r} is not a whole number.", code="invalid") from None
            numbers.append(number)
        return numbers


# --- a table of check x action ---


class CheckActionsWidget(forms.Widget):
    """One row per check, one radio button per action, and "—" for a check the policy leaves
    unset. Actions a check cannot take (redacting a verdict on a whole text) are not offered."""

    def __init__(
        self,
        checks: Sequence[str] = (),
        actions: Sequence[str] = (),
        unavailable: frozenset[tuple[str, str]] = frozenset(),
        attrs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(attrs)
        self.checks, self.actions, self.unavailable = tuple(checks), tuple(actions), unavailable

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        legacy, text = _legacy_json(data, name, [f"{name}__{check}" for check in self.checks])
        if legacy:
            return text
        return {check: data.get(f"{name}__{check}", "") for check in self.checks}

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data and not any(f"{name}__{check}" in data for check in self.checks)

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        chosen = value if isinstance(value, dict) else _as_dict(value)
        head = format_html_join("", '<th scope="col">{}</th>', ((action,) for action in ("—", *self.actions)))
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th>{}</tr>',
            ((check.replace("_", " "), self._cells(name, check, chosen.get(check, ""))) for check in self.checks),
        )
        return format_html(
            '<table class="cockpit-check-actions" id="id_{}"><thead><tr><th>check</th>{}</tr></thead>'
            "<tbody>{}</tbody></table>",
            name,
            head,
            rows,
        )

    def _cells(self, name: str, check: str, current: str) -> SafeString:
        cells = []
        for action in ("", *self.actions):
            if (check, action) in self.unavailable:
                cells.append(format_html('<td class="cockpit-muted" title="{}">n/a</td>', f"{check} cannot {action}"))
                continue
            cells.append(
                format_html(
                    '<td><input type="radio" name="{}__{}" value="{}" aria-label="{} {}"{}></td>',
                    name,
                    check,
                    action,
                    check,
                    action or "not set",
                    " checked" if current == action else "",
                )
            )
        return SafeString("".join(cells))


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


class CheckActionsField(forms.Field):
    """check -> action, leaving out the checks set to "—"."""

    def __init__(
        self,
        *,
        checks: Sequence[str],
        actions: Sequence[str],
        unavailable: frozenset[tuple[str, str]] = frozenset(),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("widget", CheckActionsWidget(checks, actions, unavailable))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dict[str, str]:
        if isinstance(value, str):
            value = _parse_json(value, dict, "Choose an action for each check.")
        return {str(check): str(action) for check, action in (value or {}).items() if action not in (None, "")}


# --- one term a line ---


class LinesField(forms.CharField):
    """A list of strings, one a line (blank lines skipped). A JSON list, as the API takes it, is read as such."""

    widget = forms.Textarea

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("rows", 6)
        self.widget.attrs.setdefault("cols", 60)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        text = super().to_python(value) or ""
        if text.lstrip().startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                return parsed
        return [line.strip() for line in text.splitlines() if line.strip()]
