/* datasette-llm-htmx: the little behaviour htmx does not give us.
   Everything here is an enhancement: with JavaScript off the forms post
   normally and the pages still work. Focus after swaps comes from
   `autofocus` in the partials, the live region from out-of-band swaps,
   scrolling from `show:bottom`. */
(function () {
  "use strict";

  // What works only with JavaScript is shown only with it (.needs-js).
  document.documentElement.classList.add("llm-js");

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

  // Edit and Regenerate open the new version's page at its message
  // (#m-...). A page opened at a fragment skips `autofocus`, and Chromium
  // clears focus once it has scrolled there, so focus was left on the page
  // itself: once that is done, give it to the follow-up textarea, as after
  // Send, without scrolling away from the message.
  if (location.hash.indexOf("#m-") === 0) {
    window.addEventListener("load", function () {
      setTimeout(function () {
        var prompt = document.getElementById("prompt");
        if (prompt && (!document.activeElement || document.activeElement === document.body)) {
          prompt.focus({ preventScroll: true });
        }
      }, 0);
    });
  }

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

  // A streaming reply keeps its end, and the follow-up form under it, in
  // view while the reader sees that end; one who scrolled up to read
  // something else is left where they are.
  var pinned = false;
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    pinned = event.target.getBoundingClientRect().bottom <= window.innerHeight + 4;
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    if (!pinned || !event.target.isConnected) return;
    var end = event.target.getBoundingClientRect().bottom;
    var textarea = document.getElementById("prompt");
    var below = textarea ? textarea.getBoundingClientRect().bottom : end;
    // the textarea too, if both fit; the reply's end always
    var by = below - end < window.innerHeight - 40 ? below : end;
    if (by > window.innerHeight) window.scrollBy(0, by - window.innerHeight + 8);
  });

  // Copy buttons on each finished reply and each code block in it, only
  // where JavaScript can press them. The clipboard API needs a secure
  // origin; elsewhere (http on a LAN) a selected textarea and execCommand.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var copied = document.execCommand("copy");
    document.body.removeChild(area);
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copyButton(label, source) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy-button button-secondary";
    button.textContent = label;
    button.addEventListener("click", function () {
      copyText(source().replace(/\n+$/, "")).then(
        function () { button.textContent = "Copied"; },
        function () { button.textContent = "Copy failed"; }
      );
      setTimeout(function () { button.textContent = label; }, 2000);
    });
    return button;
  }
  function addCopyButtons(root) {
    var turns = root.matches && root.matches(".turn-model") ? [root] : root.querySelectorAll(".turn-model");
    Array.prototype.forEach.call(turns, function (turn) {
      var bodies = turn.querySelectorAll(".reply-body.markdown");
      if (turn.dataset.copyable || !bodies.length || turn.querySelector(".streaming")) return;
      turn.dataset.copyable = "1";
      bodies.forEach(function (body) {
        body.querySelectorAll("pre").forEach(function (pre) {
          var holder = document.createElement("div");
          holder.className = "code-copy";
          holder.appendChild(copyButton("Copy code", function () { return pre.innerText; }));
          pre.parentNode.insertBefore(holder, pre);
        });
      });
      // the reply as it reads, without the code blocks' buttons
      var button = copyButton("Copy", function () {
        var holders = turn.querySelectorAll(".code-copy");
        holders.forEach(function (h) { h.hidden = true; });
        var text = Array.prototype.map.call(bodies, function (b) { return b.innerText; }).join("\n\n");
        holders.forEach(function (h) { h.hidden = false; });
        return text;
      });
      var footer = turn.querySelector(".turn-footer");
      if (footer) footer.insertBefore(button, footer.firstChild);
      else bodies[bodies.length - 1].insertAdjacentElement("afterend", button);
    });
  }
  document.addEventListener("htmx:load", function (event) { addCopyButtons(event.target); });

  // Print: a button only where JavaScript can press it.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });
  });
})();
