// Keyboard shortcuts for the rating form. The form works without this script.
(function () {
  "use strict";
  var form = document.getElementById("rating");
  if (!form) return;
  var rows = Array.prototype.slice.call(form.querySelectorAll("fieldset[data-row]"));
  var current = 0;
  function firstUnanswered() {
    for (var i = 0; i < rows.length; i++) {
      if (!rows[i].querySelector("input:checked")) return i;
    }
    return rows.length - 1;
  }
  function show(i) {
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("current", n === current); });
  }
  function choose(row, value) {
    var input = row.querySelector('input[value="' + value + '"]');
    if (input) { input.checked = true; }
    return !!input;
  }
  rows.forEach(function (r, n) {
    r.addEventListener("click", function () { show(n); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key;
    var pref = rows[rows.length - 1];
    if (key >= "1" && key <= "5" && rows[current] !== pref) {
      choose(rows[current], key);
      show(firstUnanswered());
      e.preventDefault();
    } else if (key === "a" || key === "A" || key === "b" || key === "B") {
      choose(pref, key.toUpperCase()); show(firstUnanswered()); e.preventDefault();
    } else if (key === "t" || key === "T") {
      choose(pref, "tie"); show(firstUnanswered()); e.preventDefault();
    } else if (key === "ArrowDown") {
      show(current + 1); e.preventDefault();
    } else if (key === "ArrowUp") {
      show(current - 1); e.preventDefault();
    } else if (key === "ArrowLeft" || key === "ArrowRight") {
      var link = document.getElementById(key === "ArrowLeft" ? "prev" : "next");
      if (link) { window.location.href = link.getAttribute("href"); e.preventDefault(); }
    } else if (key === "Enter") {
      if (form.reportValidity()) { form.submit(); }
      e.preventDefault();
    }
  });
  show(firstUnanswered());
})();
