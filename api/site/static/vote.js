// Progressive enhancement of the "was this helpful?" forms: submit them with fetch and swap
// in the panel the server renders, so the page does not reload. Without JavaScript (or if
// the request fails) the forms post normally and the server redirects back.
(function () {
  "use strict";

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("feedback");
    var old = document.getElementById("feedback");
    if (!fresh || !old) return false;
    old.replaceWith(fresh);
    // Move focus to the outcome so keyboard and screen-reader users hear it.
    var notice = fresh.querySelector(".notice");
    if (notice) notice.focus();
    return true;
  }

  function fallback(form, submitter) {
    if (submitter && submitter.name) {
      var field = document.createElement("input");
      field.type = "hidden";
      field.name = submitter.name;
      field.value = submitter.value;
      form.appendChild(field);
    }
    form.submit(); // bypasses this handler: the plain POST path
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("vote")) return;
    if (!window.fetch || !window.DOMParser) return;
    event.preventDefault();
    var submitter = event.submitter || null;
    var data = new URLSearchParams(new FormData(form));
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var panel = document.getElementById("feedback");
    if (panel) panel.setAttribute("aria-busy", "true");
    fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", "Accept": "text/html" }
    })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        // Error answers (429, 403, 400) also carry the panel, with their message.
        if (!swap(html)) fallback(form, submitter);
      })
      .catch(function () { fallback(form, submitter); });
  });
})();
