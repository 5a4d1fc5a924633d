"""What the offline auditor reports: each check's outcome and the first disagreement, precisely.

Pure data, shared by :mod:`voting.audit_verify` (which fills it) and the CLI (which prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The checks, in the order they run and are reported; a bundle passes when all pass.
CHECKS: tuple[tuple[str, str], ...] = (
    ("manifest", "Manifest and the SHA-256 of every file"),
    ("certificates", "Issuing CA, OCSP signers, seals and CRLs chain to the given root"),
    ("manifest_seal", "Manifest sealed by the platform"),
    ("tree_heads", "Every tree head sealed by the platform"),
    ("log", "Merkle log recomputed from the records equals every tree head"),
    ("signatures", "Every ballot and revocation signed, signer good at receipt (OCSP evidence)"),
    ("payloads", "Payloads name this meeting, a registered holder, choices fitting the agenda"),
    ("rules", "Company Act rules give every status the platform gave"),
    ("tally", "Tally recomputed from the ballots and the room equals the frozen tally"),
)
CHECK_ORDER = {key: n for n, (key, _) in enumerate(CHECKS)}
HOLDER_BINDING_NOTE = (
    "Checked against the platform's word: each signer's certificate names the investor the "
    "register matches to the holder it voted for. That match itself (a keyed hash of the identity "
    "number under an HSM key) cannot be redone offline; the platform vouches for it by sealing the "
    "manifest.")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Disagreement:
    """Where the bundle and the recomputation part: ``where`` names the ballot (leaf index,
    holder), tree head, file or figure (item, field); ``expected`` is what the signed data
    and the rules give, ``found`` what the bundle says."""

    check: str
    where: str
    message: str
    expected: str | None = None
    found: str | None = None
    leaf: int = -1  # orders the disagreements of one check: records by leaf index, others first

    def __str__(self) -> str:
        figures = ""
        if self.expected is not None or self.found is not None:
            figures = f" (expected {self.expected}, found {self.found})"
        return f"{self.where}: {self.message}{figures}"

    @property
    def order(self) -> tuple[int, int]:
        """The order in which disagreements are reported: by check, then by leaf."""
        return CHECK_ORDER.get(self.check, len(CHECKS)), self.leaf


@dataclass(frozen=True)
class CheckOutcome:
    """One check: passed, failed (with the disagreement) or skipped (after an earlier failure)."""

    key: str
    title: str
    status: str
    detail: str = ""


@dataclass
class AuditReport:
    """The verdict on a bundle. ``ok`` when every check passed."""

    meeting: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    disagreement: Disagreement | None = None
    more_disagreements: list[Disagreement] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    figures: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the bundle agrees with itself, the rules and the root in every check."""
        return self.disagreement is None and all(check.status == PASSED for check in self.checks)
