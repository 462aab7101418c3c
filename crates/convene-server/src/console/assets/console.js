// The console's own script, all of it: a button with data-copy="<id>" copies that field's text. Pages work without
// it; the field can still be selected and copied by hand.
document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-copy]');
  const field = button && document.getElementById(button.dataset.copy);
  if (!field) return;
  const status = button.parentElement.querySelector('[role="status"]');
  field.select();
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch {
    // The clipboard API needs a secure context (https or localhost); the older command works elsewhere.
    copied = document.execCommand('copy');
  }
  if (status) status.textContent = copied ? 'Copied.' : 'Selected: press Ctrl+C to copy.';
});
