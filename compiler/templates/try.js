// The "try a referral" form: the typed fields become a context, which the rules above
// (generated from the model by compiler/js.py) evaluate as the Python evaluator would.
(function () {
  const form = document.getElementById("try");
  const result = document.getElementById("try-result");
  const MONEY = /^\s*(?:([^\d\s,.A-Za-z-])\s*(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)|([A-Za-z]{3})\s+(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)|(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s+([A-Za-z]{3}))\s*$/;

  function money(text) {
    const m = MONEY.exec(text);
    if (!m) return null;
    const currency = m[1] ? R.SYMBOLS[m[1]] : (m[3] || m[6]).toUpperCase();
    const number = (m[2] || m[4] || m[5]).replace(/,/g, "");
    const exp = R.EXPONENTS[currency];
    if (currency === undefined || exp === undefined) return null;
    const [whole, frac = ""] = number.split(".");
    if (frac.length > exp) return null;
    return { amount: BigInt(whole + frac.padEnd(exp, "0")), currency };
  }
  function scalar(text) {
    if (text === "true" || text === "false") return text === "true";
    if (text === "null") return null;
    if (/^-?\d+$/.test(text)) return BigInt(text);
    if (/^-?\d+\.\d+$/.test(text)) return new R.Dec(text);
    return text;
  }
  // A field's text as the value a record would hold (a wrong one stays text: refused).
  function parse(text, kind) {
    if (text === "null") return null;
    if (kind === "money") return /^-?\d+$/.test(text) ? BigInt(text) : money(text) || text;
    if (kind === "number") return /^-?\d+(\.\d+)?$/.test(text) ? scalar(text) : text;
    if (kind === "string" || kind === "date") return text;
    if (kind === "list") {
      return text.split(",").map((s) => s.trim()).filter(Boolean)
        .map((s) => (/^".*"$/.test(s) ? s.slice(1, -1) : money(s) || scalar(s)));
    }
    return money(text) || scalar(text);
  }
  function context() {
    const ctx = {};
    for (const input of form.querySelectorAll("[data-path]")) {
      const text = input.value.trim();
      if (text === "") continue;  // missing
      const keys = input.dataset.path.split(".");
      let node = ctx;
      for (const k of keys.slice(0, -1)) node = Object.hasOwn(node, k) ? node[k] : (node[k] = {});
      node[keys[keys.length - 1]] = parse(text, input.dataset.kind);
    }
    return ctx;
  }
  const pays = (rs) => rs.map((r) => `${R.formatMoney(new R.Money(r.amount, r.currency))} to ${r.role}${r.capped ? " (capped)" : ""}`).join(", ");
  function show() {
    let data, text;
    try {
      const outcome = R.evaluate(RULES, context()).outcomes.find((o) => o.rule_id === RULE);
      data = outcome;
      if (!outcome.matched) text = "The rule does not match: it pays nothing.";
      else {
        text = outcome.rewards.length ? `The rule matches: it pays ${pays(outcome.rewards)}.` : "The rule matches, but pays nothing.";
        if (outcome.suppressed.length) text += ` Suppressed by EXCLUSIVE ${outcome.suppressed_by}: ${pays(outcome.suppressed)}.`;
      }
      if (outcome.reverse) text += " REVERSE IF holds: its rewards are reversed.";
      result.className = outcome.matched ? "pass" : "muted";
    } catch (err) {
      if (!(err instanceof R.EvaluationError)) throw err;
      data = { error: err.message };
      text = `Refused: ${err.message}`;
      result.className = "fail";
    }
    result.textContent = text;
    result.dataset.result = JSON.stringify(data, (k, v) => (typeof v === "bigint" ? v.toString() : v));
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); show(); });
  for (const button of document.querySelectorAll("button[data-fill]")) {
    button.addEventListener("click", () => {
      const given = JSON.parse(button.dataset.fill);
      for (const input of form.querySelectorAll("[data-path]")) {
        input.value = Object.hasOwn(given, input.dataset.path) ? given[input.dataset.path] : "";
      }
      show();
    });
  }
})();
