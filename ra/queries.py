"""Read-side of the RA: what a broker (or an operator) may see of its investors."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlmodel import Session

from core.auth import Actor, Role
from core.errors import Forbidden
from hsm_sim.base import KeyStore
from ra import secrets as ra_secrets
from ra.identity import IdentityKind, InvalidIdentity, parse_identity
from ra.models import BrokerAccount, Credential, Investor
from ra.schemas import AccountLinkOut, CredentialOut, InvestorOut, InvestorPage


def investor_view(session: Session, actor: Actor, investor: Investor) -> InvestorOut:
    """The investor with the account links the caller's tenant may see."""
    links = select(BrokerAccount).where(BrokerAccount.investor_id == investor.id)
    if actor.role is Role.RA_OFFICER:
        links = links.where(BrokerAccount.broker_code == actor.tenant)
    accounts = [AccountLinkOut(broker_code=a.broker_code, account_number=a.account_number, linked_at=a.linked_at)
                for a in session.execute(links.order_by(BrokerAccount.id)).scalars()]
    credential = session.execute(
        select(Credential).where(Credential.investor_id == investor.id)
        .order_by(Credential.current.desc().nulls_last(), Credential.id.desc()).limit(1)  # type: ignore[union-attr]
    ).scalar_one_or_none()
    return InvestorOut(
        investor_id=investor.id or 0, reference=investor.reference, id_masked=investor.id_masked,
        id_kind=investor.id_kind, name=investor.name, accounts=accounts,
        credential=None if credential is None else CredentialOut(
            credential_id=credential.credential_id, status=credential.status,
            certificate_serial=credential.certificate_serial, pin_locked=credential.locked_at is not None,
            device_registered_at=credential.device_registered_at,
        ),
    )


def search_investors(session: Session, keystore: KeyStore, actor: Actor, *, query: str | None,
                     offset: int, limit: int) -> InvestorPage:
    """The caller's investors, newest first; ``query`` matches a name, a reference, an account
    number, a masked identity number as shown (``A12****789``), or a whole identity number
    (looked up through its HMAC, never stored in clear)."""
    if actor.role not in (Role.RA_OFFICER, Role.OPERATOR, Role.AUDITOR):
        raise Forbidden("this list is for RA officers and operators", code="forbidden_role")
    statement = select(Investor)
    if actor.role is Role.RA_OFFICER:
        statement = statement.where(Investor.id.in_(  # type: ignore[union-attr]
            select(BrokerAccount.investor_id).where(BrokerAccount.broker_code == actor.tenant)))
    if query:
        text = query.strip()
        own_accounts = select(BrokerAccount.investor_id).where(BrokerAccount.account_number == text)
        if actor.role is Role.RA_OFFICER:  # another broker's account numbers must not be confirmable
            own_accounts = own_accounts.where(BrokerAccount.broker_code == actor.tenant)
        conditions = [Investor.name.contains(text), Investor.reference == text.upper(),  # type: ignore[attr-defined]
                      Investor.id_masked == text.upper(), Investor.id.in_(own_accounts)]  # type: ignore[union-attr]
        for kind in IdentityKind:
            try:
                identity = parse_identity(kind, text)
            except InvalidIdentity:
                continue
            conditions.append(Investor.id_hmac == ra_secrets.identity_hmac(keystore, kind.value, identity.number))
        statement = statement.where(or_(*conditions))
    total = session.execute(select(func.count()).select_from(statement.subquery())).scalar_one()
    rows = session.execute(statement.order_by(Investor.id.desc()).offset(offset).limit(limit)).scalars().all()  # type: ignore[union-attr]
    return InvestorPage(items=[investor_view(session, actor, r) for r in rows], total=total, offset=offset, limit=limit)
