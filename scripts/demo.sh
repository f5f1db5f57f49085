#!/usr/bin/env bash
# `make run`: the main job on the embedded default database, end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${DEMO_OUT:-demo}"
mkdir -p "$out"
db="${REFERRAL_DB_URL:-sqlite:///referral.db}"
echo "== database: $db"
referral db upgrade

echo "== rules: check, test, render"
referral rules check rules/
referral rules test rules/
if command -v dot >/dev/null 2>&1; then
    fmt=svg
else
    fmt=dot
    echo "== skipped: SVG diagrams and the rule catalog, because Graphviz's dot is not installed" \
         "(apt-get install graphviz); writing DOT diagrams instead"
fi
referral rules render rules/ --format "$fmt" -o "$out/diagrams"
if [ "$fmt" = svg ]; then
    echo "== rule catalog (open $out/site/index.html in a browser)"
    referral rules catalog rules/ -o "$out/site"
fi

echo "== generate 5,000 referral records"
referral demo generate --records 5000 --seed 7 -o "$out/records.jsonl"

echo "== settle (first run)"
referral settle --rules rules/ --records "$out/records.jsonl" --explain "$out/explain.jsonl"

echo "== settle again: the same input posts nothing twice"
referral settle --rules rules/ --records "$out/records.jsonl"

echo "== balances of a few users"
for user in $(referral ledger export --format jsonl | head -n 40 \
              | python3 -c 'import json,sys; print(*sorted({json.loads(l)["user_id"] for l in sys.stdin})[:3])'); do
    echo "-- $user"
    referral ledger balance "$user"
done

echo "== month end: payees, a payout batch of the confirmed rewards, exported to CSV, marked paid"
today="$(python3 -c 'import datetime; print(datetime.date.today())')"
batch="$today-INR"  # a batch's id is its as-of date and currency
referral demo payees --records "$out/records.jsonl" --seed 7 -o "$out/payees.csv"
referral payees import "$out/payees.csv"
referral payout create --as-of "$today"
referral payout list
referral payout export "$batch" --format csv -o "$out/payout-$batch.csv"
referral payout complete "$batch"

echo "== liabilities as of $today (report html: $out/report/index.html)"
referral report liabilities --as-of "$today"
referral report html --as-of "$today" -o "$out/report"

echo "== verify the whole ledger"
referral ledger verify
