// The rule evaluator in the browser: the semantics of dsl/evaluate/interpreter.py, line for
// line, so that the catalog's "try a referral" form gives the Python evaluator's answer,
// errors and their messages included (tests/test_js.py runs both on generated contexts).
// Context values: strings, booleans, null, BigInt (whole numbers), Dec (decimals), JS
// numbers (floats, refused as Python refuses them), dates, arrays and plain objects.
// Timestamps are ISO text, read in the program's time zone as dsl/timeutil.py reads them.
"use strict";
const R = (function () {
  const MISSING = Symbol("missing");
  const MAX_MINOR_UNITS = 9223372036854775807n;

  class EvaluationError extends Error {}

  class Dec {
    constructor(text, display = text) {
      const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text);
      if (!m || (m[2] + (m[3] || "")) === "") throw new Error(`not a decimal: ${text}`);
      const frac = m[3] || "";
      this.n = BigInt(m[1] + (m[2] + frac || "0"));
      this.e = frac.length;
      this.text = display;  // as Python's str(Decimal) writes it
    }
    toString() { return this.text; }
  }

  class Money {
    constructor(amount, currency) { this.amount = amount; this.currency = currency; }
  }

  class PyDate {
    constructor(y, m, d) {
      this.y = y; this.m = m; this.d = d;
      const t = new Date(0);
      t.setUTCFullYear(y, m - 1, d);  // Date.UTC would read years below 100 as 19xx
      this.ord = Math.round(t.getTime() / 86400000);  // days since 1970-01-01
    }
    static fromOrd(ord) {
      const t = new Date(ord * 86400000);
      return new PyDate(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate());
    }
    iso() {
      const p = (n, w) => String(n).padStart(w, "0");
      return `${p(this.y, 4)}-${p(this.m, 2)}-${p(this.d, 2)}`;
    }
  }

  // A timestamp read in the program's time zone: its wall-clock date there and the
  // microseconds since that midnight.  Python compares two such datetimes (one tzinfo)
  // by their wall clocks, and so does this.
  class Stamp {
    constructor(day, us) { this.day = day; this.us = us; }
  }

  const isInt = (v) => typeof v === "bigint";
  const isFloat = (v) => typeof v === "number";
  const isNum = (v) => isInt(v) || v instanceof Dec;
  const isStr = (v) => typeof v === "string";
  const isBool = (v) => typeof v === "boolean";
  const isList = (v) => Array.isArray(v);
  const isMap = (v) => v !== null && typeof v === "object" && !isList(v) &&
    !(v instanceof Dec) && !(v instanceof Money) && !(v instanceof PyDate) && !(v instanceof Stamp);

  // Exact comparison of whole numbers and decimals (and booleans, as Python's 1 == True).
  function scaled(v) {
    if (isBool(v)) return [v ? 1n : 0n, 0];
    if (isInt(v)) return [v, 0];
    return [v.n, v.e];
  }
  function numCmp(a, b) {
    const [an, ae] = scaled(a), [bn, be] = scaled(b);
    const e = Math.max(ae, be);
    const x = an * 10n ** BigInt(e - ae), y = bn * 10n ** BigInt(e - be);
    return x < y ? -1 : x > y ? 1 : 0;
  }

  // Python's == on the values a context and a rule hold.
  function pyEq(a, b) {
    const numeric = (v) => isNum(v) || isBool(v);
    if (numeric(a) && numeric(b)) {
      if (isBool(a) && isBool(b)) return a === b;
      return numCmp(a, b) === 0;
    }
    if (isFloat(a) || isFloat(b)) {
      const f = (v) => (isFloat(v) ? v : isBool(v) ? Number(v) : isNum(v) ? Number(v.toString()) : NaN);
      return (isFloat(a) || numeric(a)) && (isFloat(b) || numeric(b)) && f(a) === f(b);
    }
    if (a instanceof Money || b instanceof Money) {
      return a instanceof Money && b instanceof Money && a.amount === b.amount && a.currency === b.currency;
    }
    if (a instanceof PyDate || b instanceof PyDate) {
      return a instanceof PyDate && b instanceof PyDate && a.ord === b.ord;
    }
    if (a instanceof Stamp || b instanceof Stamp) {
      return a instanceof Stamp && b instanceof Stamp && a.day.ord === b.day.ord && a.us === b.us;
    }
    if (isList(a) || isList(b)) {
      return isList(a) && isList(b) && a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
    }
    if (isMap(a) || isMap(b)) {
      if (!(isMap(a) && isMap(b))) return false;
      const ka = Object.keys(a), kb = Object.keys(b);
      return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && pyEq(a[k], b[k]));
    }
    return a === b;
  }

  // ---- describing a value as the Python evaluator does (its repr)
  function reprStr(s) {
    const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
    let out = quote;
    for (const ch of s) {
      const c = ch.codePointAt(0);
      if (ch === "\\") out += "\\\\";
      else if (ch === quote) out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
      else out += ch;
    }
    return out + quote;
  }
  function reprFloat(f) {
    if (Number.isNaN(f)) return "nan";
    if (!Number.isFinite(f)) return f > 0 ? "inf" : "-inf";
    return Number.isInteger(f) && Math.abs(f) < 1e16 ? f.toFixed(1) : String(f);
  }
  function describe(v) {
    if (isBool(v)) return `the boolean ${v}`;
    if (v === null) return "null";
    if (isStr(v)) return `the string ${reprStr(v)}`;
    if (isFloat(v)) return `the float ${reprFloat(v)} (floats are not allowed; use an integer or a decimal)`;
    if (v instanceof Dec) return `the decimal ${v}`;
    if (isMap(v)) return `an object ${pyRepr(v)}`;
    const type = isInt(v) ? "int" : isList(v) ? "list" : typeof v;
    return `${type} ${pyRepr(v)}`;
  }
  // repr(jsonable(v)) without an intermediate form: floats become the repr of their repr.
  function pyRepr(v) {
    if (v === null || v === MISSING) return "None";
    if (isBool(v)) return v ? "True" : "False";
    if (isInt(v)) return v.toString();
    if (isStr(v)) return reprStr(v);
    if (isFloat(v)) return reprStr(reprFloat(v));
    if (v instanceof Dec) return reprStr(v.toString());
    if (v instanceof Money) return reprStr(formatMoney(v));
    if (v instanceof PyDate) return reprStr(v.iso());
    if (isList(v)) return "[" + v.map(pyRepr).join(", ") + "]";
    return "{" + Object.entries(v).map(([k, x]) => `${reprStr(k)}: ${pyRepr(x)}`).join(", ") + "}";
  }

  // ---- money
  const EXPONENTS = __EXPONENTS__;
  const SYMBOLS = __SYMBOLS__;
  function formatMoney(m) {
    const exp = EXPONENTS[m.currency];
    const neg = m.amount < 0n;
    const abs = neg ? -m.amount : m.amount;
    const unit = 10n ** BigInt(exp);
    const whole = exp ? abs / unit : abs, frac = exp ? abs % unit : 0n;
    let text = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    if (frac) text += "." + frac.toString().padStart(exp, "0");
    const sym = Object.keys(SYMBOLS).find((s) => SYMBOLS[s] === m.currency);
    return (neg ? "-" : "") + (sym ? sym + text : `${m.currency} ${text}`);
  }
  const unknownCurrency = (cur) => `unknown currency ${reprStr(cur)} (not an ISO 4217 code)`;

  // ---- dates and timestamps: dsl/timeutil.py's temporal
  const MIN_ORD = new PyDate(1, 1, 1).ord, MAX_ORD = new PyDate(9999, 12, 31).ord;
  function validDate(y, m, d) {
    if (y < 1 || m < 1 || m > 12 || d < 1) return null;
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    const days = m === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31;
    return d > days ? null : new PyDate(y, m, d);
  }

  // A time zone's wall clock for an instant, from the browser's (or Node's) own zone data.
  class Zone {
    constructor(name) {
      this.utc = name === null || name.toUpperCase() === "UTC";
      this.format = this.utc ? null : new Intl.DateTimeFormat("en-US", {
        timeZone: name, hourCycle: "h23", era: "short", year: "numeric", month: "numeric",
        day: "numeric", hour: "numeric", minute: "numeric", second: "numeric",
      });
    }
    // Seconds since 1970 in UTC -> the same instant's wall clock here, in seconds.
    wall(seconds) {
      if (this.utc) return seconds;
      const part = {};
      for (const p of this.format.formatToParts(new Date(seconds * 1000))) part[p.type] = p.value;
      const year = part.era === "BC" ? 1 - +part.year : +part.year;
      const t = new Date(0);
      t.setUTCFullYear(year, +part.month - 1, +part.day);
      t.setUTCHours(+part.hour, +part.minute, +part.second);
      return t.getTime() / 1000;
    }
  }

  const UTC = new Zone(null);

  // ISO 8601: a date, optionally a time (T or a space), optionally an offset.
  const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?(Z|z|[+-]\d{2}:?\d{2})?)?$/;
  // Python's datetime arithmetic beyond year 1..9999 raises OverflowError (not an
  // EvaluationError): so does this, with Python's message.
  function inRange(ord) {
    if (ord < MIN_ORD || ord > MAX_ORD) throw new RangeError("date value out of range");
    return ord;
  }
  // A date (PyDate), a timestamp in `zone` (Stamp), or null for anything else.
  function temporal(v, zone) {
    if (v instanceof PyDate) return v;
    if (!isStr(v)) return null;
    const m = ISO.exec(v);
    if (!m) return null;
    const day = validDate(+m[1], +m[2], +m[3]);
    if (day === null || m[4] === undefined) return day;
    const h = +m[4], mi = +m[5], sec = +(m[6] || 0);
    if (h > 23 || mi > 59 || sec > 59) return null;
    const us = ((h * 60 + mi) * 60 + sec) * 1000000 + Number((m[7] || "").padEnd(6, "0"));
    const off = m[8];
    if (off === undefined) return new Stamp(day, us);  // a wall-clock time in the zone
    const minutes = off.length === 1 ? 0 : +off.slice(1, 3) * 60 + +off.slice(-2);
    if (minutes >= 1440) return null;  // an offset is less than a day
    const sign = off[0] === "-" ? -1 : 1;
    const utc = (day.ord * 86400 + Math.floor(us / 1000000)) - sign * minutes * 60;
    inRange(Math.floor(utc / 86400));
    const wall = zone.wall(utc);
    const ord = inRange(Math.floor(wall / 86400));
    return new Stamp(PyDate.fromOrd(ord), (wall - ord * 86400) * 1000000 + (us % 1000000));
  }
  const dayOf = (t) => (t instanceof Stamp ? t.day : t);
  // timeutil.as_dates: two instants stay instants; a date and an instant, two dates.
  const asDates = (a, b) => (a instanceof Stamp && b instanceof Stamp ? [a, b] : [dayOf(a), dayOf(b)]);

  // ---- reading the context
  function get(ctx, path) {
    let cur = ctx;
    for (const k of path.split(".")) {
      if (!isMap(cur) || !Object.hasOwn(cur, k)) return MISSING;
      cur = cur[k];
    }
    return cur;
  }

  // The coercions of one rule (dsl.evaluate.interpreter._Compiler): errors name the rule;
  // bare integers are minor units of `defaultCurrency`, timestamps are read in `zone`.
  function makeRule(id, defaultCurrency, zone = UTC) {
    const fail = (path, expected, actual) =>
      new EvaluationError(`rule ${id}: ${path}: expected ${expected}, found ${describe(actual)}`);

    function toMoney(path, v, currency) {
      let m;
      if (v instanceof Money) m = v;
      else if (isMap(v) && Object.keys(v).length === 2 && Object.hasOwn(v, "amount") && Object.hasOwn(v, "currency")) {
        const amount = v.amount, cur = v.currency;
        if (!isInt(amount) || !isStr(cur)) throw fail(path, "money as {amount: int minor units, currency}", v);
        const code = cur.toUpperCase();
        if (!Object.hasOwn(EXPONENTS, code)) throw fail(path, `money (${unknownCurrency(code)})`, v);
        m = new Money(amount, code);
      } else if (isInt(v)) {
        if (defaultCurrency === null) throw fail(path, "money (a bare integer needs a default currency)", v);
        m = new Money(v, defaultCurrency);
      } else throw fail(path, "a money amount", v);
      if (currency !== null && m.currency !== currency) {
        throw new EvaluationError(`rule ${id}: ${path}: expected money in ${currency}, ` +
          `found money in ${m.currency} (${formatMoney(m)})`);
      }
      return m;
    }
    function toNumber(path, v) {
      if (isNum(v)) return v;
      throw fail(path, "a number", v);
    }
    function toTemporal(path, v) {
      const found = temporal(v, zone);
      if (found === null) throw fail(path, "a date (ISO 8601, like 2026-01-31 or 2026-01-31T10:00:00+05:30)", v);
      return found;
    }
    const toDate = (path, v) => dayOf(toTemporal(path, v));
    // The function bringing a context value to the kind of `literal` (or throwing).
    function coercer(path, literal) {
      if (isBool(literal)) return (v) => { if (isBool(v)) return v; throw fail(path, "a boolean", v); };
      if (literal instanceof Money) return (v) => toMoney(path, v, literal.currency);
      if (literal instanceof PyDate) return (v) => toDate(path, v);
      if (isNum(literal)) return (v) => toNumber(path, v);
      if (isStr(literal)) return (v) => { if (isStr(v)) return v; throw fail(path, "a string", v); };
      if (literal instanceof Tuple) return (v) => { if (isList(v)) return new Tuple(v); throw fail(path, "a list", v); };
      return (v) => v;
    }
    // With `dates` (an ordering, or a field the program reads as a date) two strings are
    // two dates, never compared as text.
    function fieldPair(path, a, other, b, dates) {
      if (isBool(a) || isBool(b)) {
        if (isBool(a) && isBool(b)) return [a, b];
      } else if (isNum(a) && isNum(b)) return [a, b];
      else if (isStr(a) && isStr(b) && !dates) return [a, b];
      else if (a instanceof Money || isMap(a) || b instanceof Money || isMap(b)) {
        const ma = toMoney(path, a, null);
        return [ma.amount, toMoney(other, b, ma.currency).amount];
      } else if (dates || a instanceof PyDate || b instanceof PyDate) {
        return asDates(toTemporal(path, a), toTemporal(other, b));
      }
      if (isFloat(a)) throw fail(path, "a value comparable with " + other, a);
      throw fail(other, `a value comparable with ${path} (${describe(a)})`, b);
    }
    function contains(path, actual, needle) {
      if (isStr(actual)) {
        if (!isStr(needle)) throw fail(path, "a list (a string CONTAINS only strings)", actual);
        return actual.includes(needle);
      }
      if (isList(actual)) {
        const coerce = coercer(path, needle);
        for (const item of actual) if (item !== null && pyEq(coerce(item), needle)) return true;
        return false;
      }
      throw fail(path, "a list or a string", actual);
    }
    return { defaultCurrency, fail, toMoney, toDate, coercer, fieldPair, contains };
  }

  // A list literal of a rule (Python's tuple), so that = compares it with a list field.
  class Tuple {
    constructor(items) { this.items = items; }
  }
  const key = (v) => (v instanceof Money ? v.amount : v instanceof Tuple ? v.items : v);

  const sign = (x) => (x < 0 ? -1 : x > 0 ? 1 : 0);
  function order(a, b) {
    if (a instanceof PyDate && b instanceof PyDate) return sign(a.ord - b.ord);
    if (a instanceof Stamp && b instanceof Stamp) return sign(a.day.ord - b.day.ord || a.us - b.us);
    if ((isNum(a) || isBool(a)) && (isNum(b) || isBool(b))) return numCmp(a, b);
    if (isStr(a) && isStr(b)) return a < b ? -1 : a > b ? 1 : 0;
    throw new TypeError("values without an order");
  }
  function compareOp(op, a, b) {
    switch (op) {
      case "=": return pyEq(a, b);
      case "!=": return !pyEq(a, b);
      case ">": return order(a, b) > 0;
      case ">=": return order(a, b) >= 0;
      case "<": return order(a, b) < 0;
      case "<=": return order(a, b) <= 0;
    }
    throw new EvaluationError(`unknown operator ${op}`);
  }

  // ---- conditions (each returns whether it holds; a missing or null field: false)
  function cmp(rt, ctx, path, op, value) {
    const a = get(ctx, path);
    if (a === MISSING) return false;
    if (a === null && op !== "IS" && op !== "IS NOT") return false;
    if (op === "IS" || op === "IS NOT") {
      const positive = op === "IS";
      if (value === null) return (a === null) === positive;
      if (a === null) return !positive;
      return pyEq(key(rt.coercer(path, value)(a)), key(value)) === positive;
    }
    if (op === "IN" || op === "NOT IN") {
      const items = value.items;
      const sample = items.find((v) => v !== null);
      const coerce = rt.coercer(path, sample === undefined ? null : sample);
      const k = key(coerce(a));
      const found = items.some((m) => pyEq(k, key(m)));
      return found === (op === "IN");
    }
    if (op === "CONTAINS") return rt.contains(path, a, value);
    if (value instanceof Money) return compareOp(op, rt.toMoney(path, a, value.currency).amount, value.amount);
    const coerce = rt.coercer(path, value);
    if (value === null) return op === "!=";
    return compareOp(op, key(coerce(a)), key(value));
  }

  // `dates`: an ordering, or a field the program reads as a date (Program.date_paths).
  function cmpField(rt, ctx, path, op, other, dates) {
    const a = get(ctx, path);
    if (a === MISSING) return false;
    if (a === null && op !== "IS" && op !== "IS NOT") return false;
    const b = get(ctx, other);
    if (b === MISSING || b === null) return false;
    if (op === "IN" || op === "NOT IN") {
      if (!isList(b)) throw rt.fail(other, "a list", b);
      const found = b.some((x) => pyEq(a, x));
      return op === "IN" ? found : !found;
    }
    if (op === "CONTAINS") return rt.contains(path, a, b);
    if (op === "IS" || op === "IS NOT") return pyEq(a, b) === (op === "IS");
    const [x, y] = rt.fieldPair(path, a, other, b, dates);
    return compareOp(op, x, y);
  }

  // WITHIN n DAYS OF|AFTER|BEFORE: (path's date - other's date in days, n) -> holds?
  const APART = {
    of: (d, n) => Math.abs(d) <= n,
    after: (d, n) => 0 <= d && d <= n,
    before: (d, n) => 0 <= -d && -d <= n,
  };
  function within(rt, ctx, path, days, direction, other) {
    const a = get(ctx, path), b = get(ctx, other);
    if (a === MISSING || a === null || b === MISSING || b === null) return false;
    return APART[direction](rt.toDate(path, a).ord - rt.toDate(other, b).ord, days);
  }

  // ---- actions: a reward, or why there is none
  function fixed(ruleId, to, amount, currency) {
    return () => ({ rule_id: ruleId, role: to, amount, currency, capped: false });
  }
  function percent(rt, ruleId, of, pct, pctText, to, cap) {
    const share = new Dec(pct);
    return (ctx) => {
      const base = get(ctx, of);
      if (base === MISSING || base === null) {
        return `${of} is ${base === MISSING ? "missing" : "null"}: no percentage reward`;
      }
      const money = rt.toMoney(of, base, cap ? cap.currency : rt.defaultCurrency);
      if (money.amount < 0n) throw rt.fail(of, "a non-negative amount", base);
      if (money.amount > MAX_MINOR_UNITS) throw rt.fail(of, `at most ${MAX_MINOR_UNITS} minor units`, base);
      let amount = (money.amount * share.n) / (100n * 10n ** BigInt(share.e));
      let capped = false;
      if (cap && amount > cap.amount) { amount = cap.amount; capped = true; }
      if (amount <= 0n) return `${pctText}% of ${formatMoney(money)} rounds down to nothing`;
      return { rule_id: ruleId, role: to, amount, currency: money.currency, capped };
    };
  }

  // ---- a program: CompiledProgram.evaluate_closures
  function evaluate(rules, ctx) {
    const outcomes = [], paid = [];
    const claims = new Map();
    for (const rule of rules) {
      const matched = rule.when(ctx);
      const reverse = rule.reverse ? rule.reverse(ctx) : false;
      const outcome = { rule_id: rule.id, matched, rewards: [], reverse, suppressed: [], suppressed_by: null };
      if (matched) {
        const got = rule.actions.map((act) => act(ctx)).filter((r) => typeof r !== "string");
        for (const r of got) {
          const claim = claims.get(r.role);
          if (claim !== undefined && claim[0] > rule.priority) {
            outcome.suppressed.push(r);
            outcome.suppressed_by = claim[1];
          } else outcome.rewards.push(r);
        }
        if (rule.exclusive) {
          for (const r of outcome.rewards) if (!claims.has(r.role)) claims.set(r.role, [rule.priority, rule.id]);
        }
        paid.push(...outcome.rewards);
      }
      outcomes.push(outcome);
    }
    return { rewards: paid, outcomes };
  }

  return {
    MISSING, EvaluationError, Dec, Money, PyDate, Stamp, Tuple, Zone, UTC, makeRule, cmp,
    cmpField, within, fixed, percent, evaluate, formatMoney, temporal, EXPONENTS, SYMBOLS,
    date: (y, m, d) => new PyDate(y, m, d),
  };
})();
