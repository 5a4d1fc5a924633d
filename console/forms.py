"""From HTML form fields to what the services take.

Fields are checked by the JSON API's own request models (``ra.schemas``, ``voting.schemas``),
so a form accepts exactly what the API accepts; a refusal names the field.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from console.session import SignedForm
from core.errors import AppError
from voting.agenda import NO_ACTION, VOTE_CODES
from voting.models import AgendaItemRow

Model = TypeVar("Model", bound=BaseModel)
ROOM_CODES = (*VOTE_CODES, NO_ACTION)
_COUNT = re.compile(r"[0-9]{1,30}")
_ACCOUNT_SEPARATORS = re.compile(r"[\s,;]+")


def validated(model: type[Model], data: dict[str, object]) -> Model:
    """``data`` checked by ``model``; 422 ``invalid_field`` naming the first field refused."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "form"
        raise AppError(f"{field}: {first.get('msg', 'not valid')}", code="invalid_field", status_code=422,
                       details={"field": field}) from None


def count(form: SignedForm, name: str) -> int | None:
    """A non-negative whole number (shares, votes) of any size, or None when left empty."""
    text = form.text(name, max_length=40, required=False).replace(",", "").replace("_", "")
    if not text:
        return None
    if not _COUNT.fullmatch(text):
        raise AppError(f"{name}: a whole number of votes", code="invalid_field", status_code=422,
                       details={"field": name})
    return int(text)


def room_choices(form: SignedForm, rows: list[AgendaItemRow]) -> dict[str, object]:
    """In-room votes as ballot choices: a vote code per resolution (``choice.KEY``), cumulative
    votes per candidate for an election (``votes.KEY.CANDIDATE``); empty fields are left out."""
    choices: dict[str, object] = {}
    for row in rows:
        if row.kind == "election":
            allocations = {}
            for candidate in json.loads(row.candidates):
                votes = count(form, f"votes.{row.item_key}.{candidate['key']}")
                if votes:
                    allocations[candidate["key"]] = votes
            if allocations:
                choices[row.item_key] = {"allocations": allocations}
            continue
        code = form.text(f"choice.{row.item_key}", max_length=4, required=False)
        if code and code not in ROOM_CODES:
            raise AppError(f"choice.{row.item_key}: one of {', '.join(ROOM_CODES)}", code="invalid_field",
                           status_code=422, details={"field": f"choice.{row.item_key}"})
        if code:
            choices[row.item_key] = code
    return choices


def account_numbers(text: str) -> list[str]:
    """Broker account numbers typed one per line or separated by commas."""
    return [part for part in _ACCOUNT_SEPARATORS.split(text) if part]
