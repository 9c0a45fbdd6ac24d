/* datasette-llm-htmx: the little behaviour htmx does not give us.
   Everything here is an enhancement: with JavaScript off the forms post
   normally and the pages still work. */
(function () {
  "use strict";

  // Ctrl+Enter (Cmd+Enter on a Mac) sends; Enter alone makes a new line.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!target.matches || !target.matches("textarea[data-send-shortcut]")) return;
    event.preventDefault();
    if (target.form) target.form.requestSubmit();
  });

  function promptForm(elt) {
    return elt && elt.closest ? elt.closest("#prompt-form") : null;
  }

  // Clear the last error as soon as something new is sent.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var error = document.getElementById("form-error");
    if (error && promptForm(event.detail.elt)) error.textContent = "";
  });

  // After a follow-up is accepted: empty the textarea and put focus back in
  // it, ready for the next one. On an error the text stays where it was.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = promptForm(event.detail.elt);
    var textarea = document.getElementById("prompt");
    if (form && event.detail.successful && textarea) textarea.value = "";
    if (textarea && (form || event.detail.elt.closest(".message"))) textarea.focus();
  });

  // Print: a button only where JavaScript can press it.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });
  });

  // "View all" replaced the link that had focus: keep focus on the prompt.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.classList && target.classList.contains("prompt-block")) {
      var block = document.getElementById(target.id);
      if (block) block.focus();
    }
  });

  // Keep the newest message in view as it arrives.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "messages" && target.lastElementChild) {
      target.lastElementChild.scrollIntoView({ block: "nearest" });
    }
  });
})();
