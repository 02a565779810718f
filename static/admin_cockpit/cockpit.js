// The admin cockpit's one script (no inline script: the CSP allows 'self' only).
// A button with data-copy="<element id>" copies that element's text to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  event.preventDefault();
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectText(source));
  } else {
    selectText(source);
  }
});

function selectText(element) {
  // Without the clipboard API (plain http), select the text so Ctrl+C copies it.
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// A budget's form: only the target picker that matches the chosen scope is shown (the others
// stay in the form, empty; the server refuses a target that does not match its scope).
function showBudgetTarget() {
  const scope = document.querySelector("form#budget_form select[name=scope]");
  if (!scope) return;
  for (const name of ["project", "key", "business_unit"]) {
    const row = document.querySelector(`form#budget_form .form-row.field-${name}`);
    if (row) row.hidden = scope.value !== "" && scope.value !== name;
  }
}
document.addEventListener("DOMContentLoaded", () => {
  const scope = document.querySelector("form#budget_form select[name=scope]");
  if (!scope) return;
  scope.addEventListener("change", showBudgetTarget);
  showBudgetTarget();
});
