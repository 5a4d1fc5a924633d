"""Tally of a meeting with 1,000,000 holders who all voted. Target: under 2 s.

Builds the register and every holder's effective choices in memory (five resolutions, one a
special resolution, and a five-seat cumulative election among eight candidates; a few
nominees split their votes, a few holders over-allocate and void their election), then
times ``voting.tally.tally_meeting``, the pure function both the service and the offline
auditor run.
"""

from __future__ import annotations

import argparse
import random
import time

from _support import report

from voting.agenda import AgendaItem, ElectionVote, SplitVote
from voting.tally import PresentHolder, RegisterEntry, tally_meeting
from voting.thresholds import MeetingRules

TARGET_SECONDS = 2.0
CANDIDATES = tuple(f"C{n}" for n in range(1, 9))
AGENDA = [AgendaItem("1", "acknowledgement", "Business report"), AgendaItem("2", "ordinary", "Dividend"),
          AgendaItem("3", "ordinary", "Capital from earnings"), AgendaItem("4", "special", "Articles", article="277"),
          AgendaItem("5", "ordinary", "Release of directors"),
          AgendaItem("6", "election", "Directors", seats=5, candidates=CANDIDATES)]


def build(holders: int) -> tuple[list[RegisterEntry], list[PresentHolder]]:
    rng = random.Random(7)
    register, present = [], []
    codes = ("CFOR", "CFOR", "CFOR", "CAGS", "ABST")
    for n in range(holders):
        shares = rng.randrange(1, 100_000)
        nominee = n % 97 == 0
        register.append(RegisterEntry(f"{n:08d}", shares, shares // 10 if n % 1000 == 1 else 0, nominee))
        votable = register[-1].votable_shares
        choices: dict[str, object] = {}
        for item in ("1", "2", "3", "4", "5"):
            choices[item] = SplitVote(votable // 2, votable // 4, 0) if nominee else rng.choice(codes)
        votes = votable * 5 + (1 if n % 5000 == 0 else 0)  # a few over-allocate: their election is void
        first, second = rng.sample(CANDIDATES, 2)
        choices["6"] = ElectionVote({first: votes // 2, second: votes - votes // 2})
        present.append(PresentHolder(f"{n:08d}", "evote", choices))  # type: ignore[arg-type]
    return register, present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--holders", type=int, default=1_000_000)
    args = parser.parse_args()
    register, present = build(args.holders)
    started = time.perf_counter()
    result = tally_meeting(register, AGENDA, present, MeetingRules(public_company=True))
    seconds = time.perf_counter() - started
    special = result.item("4")
    report("bench/tally.py tally", args.holders / seconds, 1_000_000 / TARGET_SECONDS, "holders/s",
           f"{args.holders:,} holders in {seconds:.2f} s (target: 1,000,000 in under {TARGET_SECONDS:.0f} s); "
           f"special resolution {special.rule}, adopted={special.adopted}")


if __name__ == "__main__":
    main()
