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
    var stopOrRetry = event.detail.elt.closest && event.detail.elt.closest(".stop-form, .retry-form");
    if (textarea && (form || stopOrRetry)) textarea.focus();
  });

  // Print: a button only where JavaScript can press it.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });
  });

  // A swap removed the element that had focus: put focus somewhere that
  // makes sense, so keyboard users keep their place.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.id) return;
    var swapped = document.getElementById(target.id);
    if (!swapped || swapped.contains(document.activeElement)) return;
    if (swapped.classList.contains("prompt-block")) {
      swapped.focus(); // "View all" showed the whole prompt
    } else if (swapped.classList.contains("title-block")) {
      var rename = swapped.querySelector(".rename-link");
      if (rename) rename.focus(); // renamed, or cancelled
    }
  });

  // Tell screen readers when a reply starts and ends, not every token: the
  // live region is polite, and only whole messages arriving change it.
  var ANNOUNCEMENTS = {
    "status-pending": "Generating…",
    "status-running": "Generating…",
    "status-done": "Reply complete",
    "status-stopped": "Reply stopped",
    "status-failed": "Reply failed",
    "status-interrupted": "Reply interrupted"
  };
  document.addEventListener("DOMContentLoaded", function () {
    var messages = document.getElementById("messages");
    var status = document.getElementById("chat-status");
    if (!messages || !status) return;
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        mutation.addedNodes.forEach(function (node) {
          if (!node.classList || !node.classList.contains("message")) return;
          for (var name in ANNOUNCEMENTS) {
            if (node.classList.contains(name)) status.textContent = ANNOUNCEMENTS[name];
          }
        });
      });
    }).observe(messages, { childList: true });
  });

  // Keep the newest message in view as it arrives.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "messages" && target.lastElementChild) {
      target.lastElementChild.scrollIntoView({ block: "nearest" });
    }
  });
})();
