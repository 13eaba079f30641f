// Sorting, the reported/measured filter, the size filter, the search and the BibTeX copy buttons. Plain JS, no
// dependencies, works from file://.
(function () {
  "use strict";
  function each(selector, fn, root) { Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn); }
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
  each("table.lb", function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortTable(table, col, th); });
    });
  });

  var search = document.getElementById("search"), size = document.getElementById("size-filter");
  var count = document.getElementById("shown-count");
  function visible(el) { return el.getClientRects().length > 0; }
  // A row is shown when its name contains the search text and its size is in the chosen bucket; table rows and
  // chart marks carry the same data-name / data-size (filters.py).
  function applyFilters() {
    var query = search.value.trim().toLowerCase(), bucket = size.value;
    each("[data-name]", function (el) {
      var match = el.getAttribute("data-name").indexOf(query) !== -1 &&
        (bucket === "all" || el.getAttribute("data-size") === bucket);
      el.classList.toggle("filtered-out", !match);
    });
    var shown = 0, total = 0;
    each("table.lb.main", function (table) {
      each("tbody tr", function (tr) { total += 1; if (visible(tr)) shown += 1; }, table);
    });
    each("table.lb", function (table) {
      var note = table.parentNode.nextElementSibling;
      if (!note || !note.classList.contains("empty")) return;
      var any = Array.prototype.some.call(table.tBodies[0].rows, visible);
      note.hidden = any || !visible(table.parentNode);
    });
    count.textContent = (query || bucket !== "all") ? shown + " of " + total + " rows" : "";
  }
  search.addEventListener("input", applyFilters);
  size.addEventListener("change", applyFilters);
  each("[data-filter-value]", function (button) {
    button.addEventListener("click", function () {
      document.body.setAttribute("data-filter", button.getAttribute("data-filter-value"));
      each("[data-filter-value]", function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
      applyFilters();
    });
  });

  // Copy: select the entry (so Ctrl+C works whatever the browser allows), then try the clipboard.
  each("button[data-copy]", function (button) {
    button.addEventListener("click", function () {
      var pre = document.getElementById(button.getAttribute("data-copy"));
      var status = button.parentNode.querySelector(".copy-status");
      var range = document.createRange();
      range.selectNodeContents(pre);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      function done(ok) { status.textContent = ok ? "Copied." : "Selected: press Ctrl+C (⌘C) to copy."; }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(pre.textContent).then(function () { done(true); }, function () { done(false); });
      } else {
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(ok);
      }
    });
  });
})();
