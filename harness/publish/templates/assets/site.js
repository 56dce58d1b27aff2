// The overview's filters and sortable columns (harness report --html); the page works without it.
(function () {
  const $ = (id) => document.getElementById(id);
  const table = $("models");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const ids = ["filter-family", "filter-status", "filter-change", "filter-stack", "hide-passing", "filter-name"];
  function apply() {
    const [family, status, change, stack] = ids.slice(0, 4).map((id) => $(id).value);
    const hide = $("hide-passing").checked, name = $("filter-name").value.toLowerCase();
    let shown = 0;
    for (const tr of rows) {
      const d = tr.dataset;
      const ok = (!family || d.family === family) && (!status || d.status === status) && (!stack || d.stack === stack)
        && (!change || d.change === change) && !(hide && d.status === "pass") && (!name || d.model.toLowerCase().includes(name));
      tr.hidden = !ok;
      shown += ok ? 1 : 0;
    }
    $("shown").textContent = "showing " + shown + " of " + rows.length;
  }
  for (const id of ids) { $(id).addEventListener("input", apply); $(id).addEventListener("change", apply); }
  function key(tr, i) {
    const td = tr.cells[i], v = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim();
    const n = parseFloat(v);
    return v === "" ? null : isNaN(n) ? v.toLowerCase() : n;
  }
  for (const th of table.querySelectorAll("th.sortable")) {
    th.addEventListener("click", () => {
      const i = Number(th.dataset.key), dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      for (const other of table.querySelectorAll("th.sortable")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      const sorted = rows.slice().sort((a, b) => {
        const x = key(a, i), y = key(b, i);
        if (x === null || y === null) return (x === null) - (y === null);  // blanks last, either way
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      for (const tr of sorted) body.appendChild(tr);
    });
  }
  apply();
})();
