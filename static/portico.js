// Copy buttons: <button data-copy="element-id"> copies that element's text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  } catch {
    window.getSelection().selectAllChildren(source);
  }
});

// Mailbox form: show only the fields of the chosen protocol (all stay in the page without JS).
for (const select of document.querySelectorAll("[data-protocol-select]")) {
  const form = select.form;
  const sync = () => {
    for (const fieldset of form.querySelectorAll("[data-for-protocol]")) {
      fieldset.hidden = !fieldset.dataset.forProtocol.split(" ").includes(select.value);
    }
  };
  select.addEventListener("change", sync);
  sync();
}
