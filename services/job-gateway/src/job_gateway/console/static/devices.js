// The console's copy buttons: <button data-copy="ID"> copies the text of the element ID and
// says so in the next element with class "copied" (a live region). The Clipboard API needs a
// secure context; over plain HTTP on a LAN the text is selected and copied the old way.
"use strict";

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copyText(element) {
  const text = element.textContent;
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return true;
  }
  selectText(element);
  return document.execCommand("copy");
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  let status = button.nextElementSibling;
  while (status && !status.classList.contains("copied")) status = status.nextElementSibling;
  let copied = false;
  try {
    copied = source !== null && (await copyText(source));
  } catch (error) {
    copied = false;
  }
  if (!copied && source !== null) selectText(source);
  if (status) status.textContent = copied ? "Copied." : "Selected: press Ctrl+C (⌘C) to copy.";
});
