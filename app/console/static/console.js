// The console's own script: every htmx request carries the session's CSRF token; forms
// (or the pressed button) with data-confirm ask before they submit. No inline script
// anywhere (the CSP forbids it).
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) event.detail.headers["X-CSRF-Token"] = token.content;
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  // The pressed button's own data-confirm (one form, several choices) before the form's.
  const button = event.submitter;
  const ask = (button && button.dataset.confirm) || (form instanceof HTMLFormElement && form.dataset.confirm);
  if (ask && !window.confirm(ask)) {
    event.preventDefault();
  }
});
