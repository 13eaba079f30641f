// The viewer's filters, search, sort and paging. The cards are in the page already (rendered and escaped by the
// template); this only shows, hides and reorders them, reading their data-* attributes. No network, no libraries.
(function () {
  "use strict";
  var PAGE = 50;
  var container = document.getElementById("cards");
  var cards = Array.prototype.slice.call(container.querySelectorAll("article.card"));
  var byId = function (id) { return document.getElementById(id); };
  var search = byId("q"), category = byId("f-category"), area = byId("f-area"), level = byId("f-level");
  var toys = byId("f-toys"), sort = byId("sort"), count = byId("count"), more = byId("more");
  var shown = PAGE;

  function fold(text) { return text.normalize("NFKC").toLowerCase(); }

  function toyStates(card) {
    var tokens = card.dataset.toys ? card.dataset.toys.split(" ") : [];
    return tokens.map(function (token) {
      var parts = token.split(":");
      return { level: parts[0], states: parts[1] };
    });
  }

  function rates(card) {
    return card.dataset.rates.split(" ").map(function (v) { return v === "" ? null : parseFloat(v); });
  }

  function toyRule(card, rule, wanted) {
    if (rule === "failed") { return card.dataset.status.indexOf("failed") !== -1; }
    var inLevel = toyStates(card).filter(function (t) { return !wanted || t.level === wanted; });
    if (!rule) { return !wanted || inLevel.length > 0; }
    var parts = rule.split(":"), i = Number(parts[1]), j = Number(parts[2]);
    if (parts[0] === "missed") { return inLevel.some(function (t) { return t.states[i] === "m"; }); }
    if (parts[0] === "named") { return inLevel.some(function (t) { return t.states[i] === "n"; }); }
    if (parts[0] === "allnamed") {
      return inLevel.length > 0 && inLevel.every(function (t) { return t.states[i] === "n"; });
    }
    if (parts[0] === "nm") {
      return inLevel.some(function (t) { return t.states[i] === "n" && t.states[j] === "m"; });
    }
    return true;
  }

  function matches(card, query) {
    if (category.value && card.dataset.category !== category.value) { return false; }
    if (area.value && card.dataset.area !== area.value) { return false; }
    if (query && card.dataset.search.indexOf(query) === -1) { return false; }
    return toyRule(card, toys.value, level.value);
  }

  // The sort key of a card, or null (kept last whatever the direction): no rate (failed, no toy).
  function key(card) {
    var parts = sort.value.split(":"), r = rates(card);
    if (parts[0] === "rate") { return r[Number(parts[1])]; }
    if (parts[0] === "diff") { return r[0] === null || r[1] === null ? null : r[1] - r[0]; }
    return Number(card.dataset.index);
  }

  function direction() {
    var parts = sort.value.split(":");
    return parts[0] === "order" ? 1 : Number(parts[parts.length - 1]);
  }

  function update(resetPaging) {
    if (resetPaging) { shown = PAGE; }
    var query = fold(search.value.trim());
    var visible = cards.filter(function (card) { return matches(card, query); });
    var sign = direction();
    visible.sort(function (a, b) {
      var ka = key(a), kb = key(b);
      if (ka === null || kb === null) {
        if (ka === kb) { return Number(a.dataset.index) - Number(b.dataset.index); }
        return ka === null ? 1 : -1;
      }
      return sign * (ka - kb) || Number(a.dataset.index) - Number(b.dataset.index);
    });
    var isVisible = new Set(visible);
    visible.concat(cards.filter(function (c) { return !isVisible.has(c); })).forEach(function (card) {
      container.appendChild(card);
    });
    cards.forEach(function (card) { card.hidden = true; });
    visible.slice(0, shown).forEach(function (card) { card.hidden = false; });
    var showing = Math.min(shown, visible.length);
    count.textContent = visible.length === cards.length
      ? "showing " + showing + " of " + cards.length + " images"
      : "showing " + showing + " of " + visible.length + " matching images (" + cards.length + " in all)";
    more.hidden = visible.length <= shown;
  }

  search.addEventListener("input", function () { update(true); });
  [category, area, level, toys, sort].forEach(function (el) {
    el.addEventListener("change", function () { update(true); });
  });
  more.addEventListener("click", function () { shown += PAGE; update(false); });
  document.querySelector("form.filters").addEventListener("submit", function (e) { e.preventDefault(); });
  update(true);
})();
