// Copy buttons: <button data-copy="#id"> copies the text of the element #id (the tenant
// page's user code). Delegated from the document, so buttons htmx adds later work too.
(function () {
  "use strict";
  function copied(button, words) {
    var before = button.textContent;
    button.textContent = words;
    setTimeout(function () { button.textContent = before; }, 2000);
  }
  function fallback(text) {
    // Without the Clipboard API (plain http on a closed network): a selected, hidden field.
    var field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "visually-hidden";
    document.body.appendChild(field);
    field.select();
    var done = document.execCommand("copy");
    document.body.removeChild(field);
    return done;
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, "Copied"); },
        function () { copied(button, fallback(text) ? "Copied" : "Select and copy the code"); }
      );
    } else {
      copied(button, fallback(text) ? "Copied" : "Select and copy the code");
    }
  });
})();
