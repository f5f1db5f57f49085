// Filters the rules table as you type: a rule stays when every word of the query is in
// its id, description, phrases, fields, rewards, limit or hold.
"use strict";
(function () {
  const input = document.getElementById("search");
  const rows = Array.from(document.querySelectorAll("#rules tbody tr"));
  const count = document.getElementById("search-count");
  function filter() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const text = row.dataset.search;
      const keep = words.every((w) => text.includes(w));
      row.hidden = !keep;
      if (keep) shown += 1;
    }
    count.textContent = words.length ? `${shown} of ${rows.length} rules` : "";
  }
  input.addEventListener("input", filter);
  filter();
})();
