// Starts ReDoc on /redoc from packaged files (no inline script, no third party).
window.addEventListener("load", function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.getAttribute("data-openapi-url"), { disableSearch: false }, root);
});
