/* datasette-llm-htmx: the little behaviour htmx does not give us.
   Everything here is an enhancement: with JavaScript off the forms post
   normally and the pages still work. Focus after swaps comes from
   `autofocus` in the partials, the live region from out-of-band swaps,
   scrolling from `show:bottom`. */
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

  // After a follow-up is accepted: empty the textarea and put focus back in
  // it, ready for the next one. On an error the text stays where it was.
  // Stop and Retry also hand focus back to the textarea.
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt.closest) return;
    var textarea = document.getElementById("prompt");
    if (!textarea) return;
    if (elt.closest("#prompt-form")) {
      if (event.detail.successful) {
        textarea.value = "";
        var files = elt.closest("form").querySelector("input[data-attachments]");
        if (files) files.value = "";
      }
      textarea.focus();
    } else if (elt.closest(".stop-form, .retry-form")) {
      textarea.focus();
    }
  });

  // Files pasted or dropped on a prompt join its form's file input (the
  // input alone works without JavaScript).
  function addFiles(form, files) {
    var input = form && form.querySelector("input[data-attachments]");
    if (!input || !files || !files.length) return false;
    var all = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (f) { all.items.add(f); });
    Array.prototype.forEach.call(files, function (f) { all.items.add(f); });
    input.files = all.files;
    return true;
  }
  document.addEventListener("paste", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("textarea[data-send-shortcut]")) return;
    if (addFiles(target.form, event.clipboardData && event.clipboardData.files)) {
      event.preventDefault();
    }
  });
  document.addEventListener("dragover", function (event) {
    if (event.target.closest && event.target.closest(".llm-form")) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    var form = event.target.closest && event.target.closest(".llm-form");
    if (form && addFiles(form, event.dataTransfer && event.dataTransfer.files)) {
      event.preventDefault();
    }
  });

  // Print: a button only where JavaScript can press it.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });
  });
})();
