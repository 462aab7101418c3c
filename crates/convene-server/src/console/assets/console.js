// The console's own script, all of it. Pages work without it: a field to copy can be selected by hand, and CSV can
// be pasted instead of read from a file.

// A button with data-copy="<id>" copies that field's text.
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

// A file input with data-fills="<id>" reads the chosen text file into that field. Its block is hidden until this
// script runs, since without script a chosen file would go nowhere.
for (const input of document.querySelectorAll('input[type="file"][data-fills]')) {
  input.closest('[hidden]')?.removeAttribute('hidden');
  input.addEventListener('change', async () => {
    const field = document.getElementById(input.dataset.fills);
    const file = input.files[0];
    if (field && file) field.value = await file.text();
  });
}
