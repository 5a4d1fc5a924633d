"""Quorum and majority thresholds of the Company Act, and stricter ones from the articles.

A threshold compares a part with a whole by integer cross-multiplication (never floats):
``part/whole > fraction`` ("more than half", 過半數) or ``part/whole >= fraction``
("two-thirds or more", 三分之二以上). Articles of incorporation may only make a threshold
stricter (Arts. 174, 185 ¶3); a laxer configured value is ignored and the statute applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Threshold:
    """``part > fraction × whole``, or ``part >= fraction × whole`` when ``inclusive``."""

    fraction: Fraction
    inclusive: bool

    def __post_init__(self) -> None:
        if not isinstance(self.fraction, Fraction) or not 0 < self.fraction <= 1:
            raise ValueError(f"a threshold is a Fraction in (0, 1], not {self.fraction!r}")

    def met(self, part: int, whole: int) -> bool:
        """Whether ``part`` of ``whole`` reaches the threshold. An empty whole never does."""
        if whole <= 0:
            return False
        lhs, rhs = part * self.fraction.denominator, self.fraction.numerator * whole
        return lhs >= rhs if self.inclusive else lhs > rhs

    def stricter_than(self, other: Threshold) -> bool:
        """Whether every ratio meeting ``self`` also meets ``other``, and not the reverse."""
        if self.fraction != other.fraction:
            return self.fraction > other.fraction
        return not self.inclusive and other.inclusive

    def __str__(self) -> str:
        return f"{'>=' if self.inclusive else '>'}{self.fraction}"


def more_than(fraction: Fraction) -> Threshold:
    """Strictly more than ``fraction`` of the whole."""
    return Threshold(fraction, inclusive=False)


def at_least(fraction: Fraction) -> Threshold:
    """``fraction`` of the whole or more (the usual wording of articles: 「以上」)."""
    return Threshold(fraction, inclusive=True)


MORE_THAN_HALF = more_than(Fraction(1, 2))
TWO_THIRDS_OR_MORE = at_least(Fraction(2, 3))


def as_threshold(value: Threshold | Fraction | None) -> Threshold | None:
    """Normalise a configured value: a bare Fraction means "that fraction or more"."""
    if value is None or isinstance(value, Threshold):
        return value
    return at_least(value)


def applied_threshold(statutory: Threshold, configured: Threshold | None) -> tuple[Threshold, bool]:
    """The threshold that governs, and whether it comes from the articles (stricter wins)."""
    if configured is not None and configured.stricter_than(statutory):
        return configured, True
    return statutory, False


@dataclass(frozen=True)
class MeetingRules:
    """Per-meeting legal settings.

    ``public_company`` enables the Art. 185 ¶2 alternative for special resolutions. The other
    fields are optional stricter thresholds from the articles of incorporation (a Fraction
    means "that fraction or more"; use ``more_than`` for "more than"):

    * ``ordinary_quorum`` / ``ordinary_majority`` (statute: > 1/2 present, > 1/2 of votes),
    * ``special_quorum`` / ``special_majority`` (statute: >= 2/3 present, > 1/2 of votes),
    * ``special_public_quorum`` / ``special_public_majority`` for the public-company branch
      (statute: > 1/2 present, >= 2/3 of votes).
    """

    public_company: bool
    ordinary_quorum: Threshold | Fraction | None = None
    ordinary_majority: Threshold | Fraction | None = None
    special_quorum: Threshold | Fraction | None = None
    special_majority: Threshold | Fraction | None = None
    special_public_quorum: Threshold | Fraction | None = None
    special_public_majority: Threshold | Fraction | None = None

    def __post_init__(self) -> None:
        for name in (
            "ordinary_quorum",
            "ordinary_majority",
            "special_quorum",
            "special_majority",
            "special_public_quorum",
            "special_public_majority",
        ):
            object.__setattr__(self, name, as_threshold(getattr(self, name)))


@dataclass(frozen=True)
class Decision:
    """How a resolution was decided: the rule applied and the thresholds it used."""

    rule: str
    quorum_met: bool
    adopted: bool
    quorum_required: Threshold
    majority_required: Threshold


def _named(rule: str, from_articles: bool) -> str:
    return f"{rule}+articles" if from_articles else rule


def decide_ordinary(rules: MeetingRules, present: int, outstanding: int, for_votes: int, denominator: int) -> Decision:
    """Art. 174: a majority of outstanding shares present, more than half of the votes present for."""
    quorum, quorum_from_articles = applied_threshold(MORE_THAN_HALF, as_threshold(rules.ordinary_quorum))
    majority, majority_from_articles = applied_threshold(MORE_THAN_HALF, as_threshold(rules.ordinary_majority))
    if not quorum.met(present, outstanding):
        return Decision(_named("ordinary_no_quorum", quorum_from_articles), False, False, quorum, majority)
    adopted = majority.met(for_votes, denominator)
    return Decision(_named("ordinary", quorum_from_articles or majority_from_articles), True, adopted, quorum, majority)


def decide_special(rules: MeetingRules, present: int, outstanding: int, for_votes: int, denominator: int) -> Decision:
    """Art. 185 ¶1-3 (and Arts. 277, 316 that refer to it).

    Two-thirds present and a majority of the votes present; the public-company branch (a
    majority present and two-thirds of the votes present) applies only when attendance falls
    short of the first quorum.
    """
    quorum, quorum_art = applied_threshold(TWO_THIRDS_OR_MORE, as_threshold(rules.special_quorum))
    majority, majority_art = applied_threshold(MORE_THAN_HALF, as_threshold(rules.special_majority))
    if quorum.met(present, outstanding):
        adopted = majority.met(for_votes, denominator)
        rule = _named("special_two_thirds_present", quorum_art or majority_art)
        return Decision(rule, True, adopted, quorum, majority)
    if not rules.public_company:
        return Decision(_named("special_no_quorum", quorum_art), False, False, quorum, majority)
    public_quorum, public_quorum_art = applied_threshold(MORE_THAN_HALF, as_threshold(rules.special_public_quorum))
    public_majority, public_majority_art = applied_threshold(
        TWO_THIRDS_OR_MORE, as_threshold(rules.special_public_majority)
    )
    if not public_quorum.met(present, outstanding):
        rule = _named("special_no_quorum", quorum_art or public_quorum_art)
        return Decision(rule, False, False, public_quorum, public_majority)
    adopted = public_majority.met(for_votes, denominator)
    rule = _named("special_public_majority_present", public_quorum_art or public_majority_art)
    return Decision(rule, True, adopted, public_quorum, public_majority)


def configured_rules(public_company: bool, configured: dict[str, str] | None) -> MeetingRules:
    """The rules of a meeting from its stored thresholds: fractions like ``"2/3"`` ("that or
    more") or ``">1/2"`` ("more than"), keyed by :class:`MeetingRules` field names, as
    ``voting.service.parse_thresholds`` stores them. ``ValueError`` on anything else."""
    options: dict[str, Threshold] = {}
    for name, value in (configured or {}).items():
        if name not in _CONFIGURABLE or not isinstance(value, str):
            raise ValueError(f"unknown threshold {name!r}")
        options[name] = more_than(Fraction(value[1:])) if value.startswith(">") else at_least(Fraction(value))
    return MeetingRules(public_company=public_company, **options)  # type: ignore[arg-type]


_CONFIGURABLE = frozenset({"ordinary_quorum", "ordinary_majority", "special_quorum", "special_majority",
                           "special_public_quorum", "special_public_majority"})
