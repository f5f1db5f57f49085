"""Realistic sample records for the example program in ``rules/``.

Deterministic for a given seed, so a demo or a benchmark can be reproduced.
The mix: paid and free referrers (a few of them prolific enough to hit LIMIT
caps), referees who do or do not subscribe, self-referrals, refunds that
arrive later in the file as a second record for the same referral, and a
small rate of malformed lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import TextIO

DEMO_START = date(2026, 8, 15)
COUNTRIES = ("IN", "IN", "IN", "US", "GB", "SG")
INFLUENCERS = 3


def generate_records(
    count: int, *, seed: int = 0, malformed_per_mille: int = 10, start: date = DEMO_START
) -> Iterator[str]:
    """Yield ``count`` JSONL lines (refund updates and malformed lines included in the count)."""
    rng = random.Random(seed)
    malformed_rate = malformed_per_mille / 1000
    users = max(10, count // 4)
    pending_refunds: list[dict] = []
    for n in range(count):
        roll = rng.random()
        if roll < malformed_rate:
            yield _malformed(rng, n)
            continue
        if pending_refunds and roll < malformed_rate + 0.04:
            refund = pending_refunds.pop(rng.randrange(len(pending_refunds)))
            refund["referee"]["refunded"] = True
            yield json.dumps(refund, sort_keys=True)
            continue
        record = _referral(rng, n, users, start)
        if record["referee"]["subscribed"] and rng.random() < 0.1:
            pending_refunds.append(json.loads(json.dumps(record)))
        yield json.dumps(record, sort_keys=True)


def _referral(rng: random.Random, n: int, users: int, start: date) -> dict:
    # A few prolific referrers bring many friends: they are the ones LIMIT caps.
    pool = INFLUENCERS if rng.random() < 0.08 else users
    referrer = f"u{rng.randrange(pool):06d}"
    referee = referrer if rng.random() < 0.02 else f"u{rng.randrange(users, users * 5):06d}"
    created = start + timedelta(days=rng.randrange(55))
    subscribed = rng.random() < 0.6
    record: dict = {
        "referral_id": f"ref-{n:08d}",
        "referral": {"created_at": created.isoformat()},
        "referrer": {
            "id": referrer,
            "plan": "paid" if rng.random() < 0.45 else "free",
            "country": rng.choice(COUNTRIES),
        },
        "referee": {
            "id": referee,
            "subscribed": subscribed,
            "country": rng.choice(COUNTRIES),
            "plan": rng.choice(("monthly", "annual")),
            "refunded": False,
        },
    }
    if subscribed:
        lag = rng.choice((0, 1, 3, 7, 12, 20, 29, 45))
        record["referee"]["subscribed_at"] = (created + timedelta(days=lag)).isoformat()
        # First payment in paise (the program's currency is INR).
        record["referee"]["first_payment"] = rng.choice((49900, 99900, 149900, 299900, 1199900))
    return record


def _malformed(rng: random.Random, n: int) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return json.dumps({"referral_id": f"ref-{n:08d}", "referrer": {}})[:-3]  # truncated
    if kind == 1:
        return json.dumps({"referral_id": f"ref-{n:08d}", "referee": {"id": "u1"}})
    if kind == 2:
        return json.dumps(
            {
                "referral_id": f"ref-{n:08d}",
                "referrer": {"id": "u000001", "plan": "paid"},
                "referee": {"id": "u999999", "subscribed": True, "first_payment": "a lot"},
            }
        )
    return "not json at all"


def write_records(out: TextIO, count: int, *, seed: int = 0) -> int:
    written = 0
    for line in generate_records(count, seed=seed):
        out.write(line + "\n")
        written += 1
    return written


PAYEE_COLUMNS = ("user_id", "method", "name", "ifsc", "account_number", "iban", "bic", "vpa",
                 "email")


def demo_payees(lines: Iterable[str], *, seed: int = 0, missing_per_mille: int = 50
                ) -> Iterator[dict[str, str]]:
    """A payee for (nearly) every person of the records, by country: UPI or an Indian bank
    account in India, an IBAN in Europe, PayPal elsewhere; a few people have none (the
    payout run skips them as ``no_payee``).  Shapes pass ``payees import``'s checks."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    for line in lines:
        try:
            record = json.loads(line)
            people = [(record[r]["id"], record[r].get("country", "IN"))
                      for r in ("referrer", "referee")]
        except (ValueError, KeyError, TypeError):
            continue
        for user, country in people:
            if isinstance(user, str) and user not in seen:
                seen[user] = str(country)
    for user in sorted(seen):
        if rng.random() < missing_per_mille / 1000:
            continue
        row = dict.fromkeys(PAYEE_COLUMNS, "")
        row.update(user_id=user, name=f"Person {user}")
        country = seen[user]
        if country == "IN" and rng.random() < 0.6:
            row.update(method="upi", vpa=f"{user}@okdemo")
        elif country == "IN":
            row.update(method="bank", ifsc=f"DEMO0{rng.randrange(10**6):06d}",
                       account_number=f"{rng.randrange(10**11, 10**12)}")
        elif country == "GB":
            row.update(method="bank", iban=_iban("GB", f"DEMO{rng.randrange(10**14):014d}"),
                       bic="DEMOGB2L")
        else:
            row.update(method="paypal", email=f"{user}@example.com")
        yield row


def _iban(country: str, bban: str) -> str:
    """An IBAN with correct mod-97 check digits."""
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"
