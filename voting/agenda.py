"""The agenda of a meeting and the typed choices a holder can make on it.

Choices use the ISO 20022 vote codes. A resolution takes one code for all of a holder's
shares, or (nominee holders, Art. 181) a ``SplitVote`` weighting each code by a number of
shares. An election takes an ``ElectionVote``: cumulative votes per candidate (Art. 198).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ItemKind = Literal["acknowledgement", "ordinary", "special", "election", "extempore", "amendment"]
ITEM_KINDS: frozenset[str] = frozenset(
    {"acknowledgement", "ordinary", "special", "election", "extempore", "amendment"}
)
# Added by the host during the meeting: electronic voters cannot vote on them and are deemed
# to abstain (Art. 177-1).
NOT_ELECTRONICALLY_VOTABLE: frozenset[str] = frozenset({"extempore", "amendment"})

VoteCode = Literal["CFOR", "CAGS", "ABST"]
VOTE_CODES: tuple[str, ...] = ("CFOR", "CAGS", "ABST")
# ISO 20022 "no action": accepted from the host for an in-room holder who did not vote;
# a ballot simply leaves such an item out.
NO_ACTION = "NOAC"


def is_count(value: object) -> bool:
    """True for a non-negative int (bool excluded, although Python makes it an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class AgendaItem:
    """One item of the agenda.

    ``seats`` and ``candidates`` (candidate ids, in the order of the notice) are for elections
    only; ``article`` names the legal basis where one is useful (e.g. "185" for a special
    resolution on a transfer of business).
    """

    item_id: str
    kind: ItemKind
    title: str
    seats: int = 0
    candidates: tuple[str, ...] = ()
    article: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ValueError("an agenda item needs a non-empty item_id")
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"unknown agenda item kind {self.kind!r}")
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if self.kind == "election":
            if not is_count(self.seats) or self.seats < 1:
                raise ValueError(f"election {self.item_id!r} needs at least one seat")
            if len(set(self.candidates)) != len(self.candidates):
                raise ValueError(f"election {self.item_id!r} lists a candidate twice")
        elif self.seats or self.candidates:
            raise ValueError(f"only an election has seats and candidates ({self.item_id!r})")

    @property
    def electronically_votable(self) -> bool:
        """Whether a ballot may carry a choice on this item."""
        return self.kind not in NOT_ELECTRONICALLY_VOTABLE

    @property
    def is_election(self) -> bool:
        """Whether this item is a (cumulative) election rather than a resolution."""
        return self.kind == "election"


@dataclass(frozen=True)
class SplitVote:
    """A nominee holder's split vote on a resolution (Art. 181); shares left over are not voted."""

    cfor: int = 0
    cags: int = 0
    abst: int = 0

    def __post_init__(self) -> None:
        if not all(is_count(v) for v in (self.cfor, self.cags, self.abst)):
            raise ValueError("split vote parts are non-negative integers")

    @property
    def total(self) -> int:
        """The shares this split vote uses."""
        return self.cfor + self.cags + self.abst

    def to_json(self) -> dict[str, int]:
        """The ballot form: only the codes that carry shares."""
        parts = {"CFOR": self.cfor, "CAGS": self.cags, "ABST": self.abst}
        return {code: shares for code, shares in parts.items() if shares}


@dataclass(frozen=True)
class ElectionVote:
    """Cumulative votes per candidate id on one election (Art. 198)."""

    allocations: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not all(isinstance(c, str) and is_count(v) for c, v in self.allocations.items()):
            raise ValueError("allocations map candidate ids to non-negative integers")
        object.__setattr__(self, "allocations", MappingProxyType(dict(self.allocations)))

    @property
    def total(self) -> int:
        """All the votes this ballot allocates on the election."""
        return sum(self.allocations.values())

    def to_json(self) -> dict[str, dict[str, int]]:
        """The ballot form ``{"allocations": {...}}``."""
        return {"allocations": dict(self.allocations)}


# A vote code (CFOR/CAGS/ABST, or NOAC from the host), a split vote, or an election vote.
Choice = str | SplitVote | ElectionVote
