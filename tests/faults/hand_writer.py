"""A finance clerk racing the nightly runs: ``python -m tests.faults.hand_writer URL NAME N
USER...`` posts N hand credits through the CLI (``ledger credit``, references
``hand:<NAME>:<i>``), reverses every third one (``ledger reverse``), and tries once to
credit under a reference settlement owns, which must be refused.  It prints one JSON line
per write it made, for the concurrency test to find in the ledger."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from referral.cli import main


def run(url: str, name: str, count: int, users: list[str]) -> None:
    runner = CliRunner()

    def cli(*args: str) -> None:
        result = runner.invoke(main, [*args, "--db", url])
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(args)}: exit {result.exit_code}: {result.output}")

    for i in range(count):
        ref, user, amount = f"hand:{name}:{i}", users[i % len(users)], 100 + 7 * i
        cli("ledger", "credit", user, f"INR {amount}", "--reference", ref,
            *(["--confirmed"] if i % 2 else []))
        print(json.dumps({"reference_id": ref, "user_id": user, "amount": amount * 100}),
              flush=True)
        if i % 3 == 2:
            cli("ledger", "reverse", ref, "--reason", "posted by mistake")
            print(json.dumps({"reversed": ref}), flush=True)
    taken = runner.invoke(main, ["ledger", "credit", users[0], "INR 1", "--reference",
                                 f"reward:paid_referrer_bonus:{name}:referrer", "--confirmed",
                                 "--db", url])
    print(json.dumps({"reserved_exit": taken.exit_code, "reserved_output": taken.output}),
          flush=True)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
