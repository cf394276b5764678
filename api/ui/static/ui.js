// Copy-to-clipboard buttons: the only script of the UI, and an enhancement. Without it the
// buttons stay hidden and the codes are plain selectable text.
"use strict";
(function () {
  function copyText(text) {
    // The Clipboard API exists only in secure contexts (https, localhost); a hospital
    // intranet on plain http falls back to a selection and the older copy command.
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.hidden = false;
      var label = button.textContent;
      button.addEventListener("click", function () {
        copyText(button.dataset.copy).then(function () {
          button.textContent = button.dataset.done;
          button.classList.add("done");
          setTimeout(function () { button.textContent = label; button.classList.remove("done"); }, 1500);
        });
      });
    });
  });
})();
