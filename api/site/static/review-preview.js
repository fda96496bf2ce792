// Live preview of an answer's Markdown in the editor pages: the server renders it with the
// site's sanitiser (POST /review/articles/preview), so the preview is what readers will see.
(function () {
  "use strict";
  document.querySelectorAll("textarea[data-preview]").forEach(function (area) {
    var target = document.getElementById(area.getAttribute("data-preview"));
    var form = area.form;
    if (!target || !form) return;
    var timer = null;
    var seq = 0;
    function refresh() {
      var body = new FormData();
      var csrf = form.querySelector('input[name="csrf"]');
      body.append("csrf", csrf ? csrf.value : "");
      body.append("answer", area.value);
      var mine = ++seq;
      fetch("/review/articles/preview", { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && mine === seq) target.innerHTML = data.html;  // sanitised by the server
        })
        .catch(function () {});
    }
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
  });
})();
