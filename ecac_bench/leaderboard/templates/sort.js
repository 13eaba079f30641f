// Sorting and the reported/measured filter. Plain JS, no dependencies, works from file://.
(function () {
  "use strict";
  function sortTable(table, col, th) {
    var tbody = table.tBodies[0];
    var numeric = th.classList.contains("num");
    var current = th.getAttribute("aria-sort");
    // Numbers sort best-first on the first click, text A-Z; a second click reverses.
    var dir = current ? (current === "descending" ? "ascending" : "descending") : (numeric ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
      if (x === "" && y === "") return 0;
      if (x === "") return 1;  // missing values always last
      if (y === "") return -1;
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
  }
  document.querySelectorAll("table.lb").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortTable(table, col, th); });
    });
  });
  document.querySelectorAll("[data-filter-value]").forEach(function (button) {
    button.addEventListener("click", function () {
      document.body.setAttribute("data-filter", button.getAttribute("data-filter-value"));
      document.querySelectorAll("[data-filter-value]").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
    });
  });
})();
