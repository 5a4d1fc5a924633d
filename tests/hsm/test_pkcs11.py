"""PKCS#11 backend specifics, checked on the SoftHSM2 token itself."""

from __future__ import annotations

import json
from collections.abc import Callable

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from hsm_sim import (
    DigestAlgorithm,
    KeyAlgorithm,
    KeyLocked,
    KeyNotFound,
    Mechanism,
    Pkcs11KeyStore,
)
from hsm_sim.pkcs11 import POLICY_APPLICATION

pytestmark = pytest.mark.softhsm

Label = Callable[..., str]


def token_objects(token_info: dict, label: str) -> dict:
    """The objects under ``label``, by class (read through a session of our own)."""
    token = pkcs11.lib(token_info["library"]).get_token(token_label=token_info["token"])
    with token.open() as session:  # the process is already logged in by the store
        found = {}
        for obj in session.get_objects({Attribute.LABEL: label}):
            found[obj[Attribute.CLASS]] = {
                attr: obj[attr]
                for attr in (Attribute.TOKEN, Attribute.PRIVATE, Attribute.MODIFIABLE)
            } | (
                {a: obj[a] for a in (Attribute.SENSITIVE, Attribute.EXTRACTABLE,
                                     Attribute.NEVER_EXTRACTABLE, Attribute.DECRYPT)}
                if obj[Attribute.CLASS] in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
                else {}
            ) | (
                {Attribute.APPLICATION: obj[Attribute.APPLICATION],
                 Attribute.VALUE: obj[Attribute.VALUE]}
                if obj[Attribute.CLASS] == ObjectClass.DATA
                else {}
            )
        return found


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048])
def test_private_keys_are_sensitive_and_never_extractable(
    pkcs11_store: Pkcs11KeyStore, hsm_token: dict, new_label: Label, algorithm: KeyAlgorithm
) -> None:
    label = new_label()
    pkcs11_store.generate_key_pair(label, "ca:issuing", algorithm)
    objects = token_objects(hsm_token, label)
    assert set(objects) == {ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.DATA}
    private = objects[ObjectClass.PRIVATE_KEY]
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.NEVER_EXTRACTABLE] is True
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.PRIVATE] is True and private[Attribute.TOKEN] is True
    assert private[Attribute.DECRYPT] is False


def test_secret_keys_are_sensitive_and_never_extractable(
    pkcs11_store: Pkcs11KeyStore, hsm_token: dict, new_label: Label
) -> None:
    label = new_label()
    pkcs11_store.generate_secret_key(label, "ra:pins")
    secret = token_objects(hsm_token, label)[ObjectClass.SECRET_KEY]
    assert secret[Attribute.EXTRACTABLE] is False
    assert secret[Attribute.SENSITIVE] is True
    assert secret[Attribute.PRIVATE] is True


def test_policy_is_a_private_read_only_data_object(
    pkcs11_store: Pkcs11KeyStore, hsm_token: dict, new_label: Label
) -> None:
    label = new_label()
    pkcs11_store.generate_key_pair(label, "ca:root", KeyAlgorithm.EC_P384)
    policy = token_objects(hsm_token, label)[ObjectClass.DATA]
    assert policy[Attribute.APPLICATION] == POLICY_APPLICATION
    assert policy[Attribute.PRIVATE] is True and policy[Attribute.MODIFIABLE] is False
    document = json.loads(policy[Attribute.VALUE])
    assert document["owner"] == "ca:root" and document["mechanisms"] == ["ECDSA"]


def test_a_key_deleted_behind_the_store_stops_signing(
    pkcs11_store: Pkcs11KeyStore, hsm_token: dict, new_label: Label
) -> None:
    label = new_label()
    pkcs11_store.generate_key_pair(label, "o", KeyAlgorithm.EC_P256)
    digest = bytes(32)
    pkcs11_store.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)  # cached
    token = pkcs11.lib(hsm_token["library"]).get_token(token_label=hsm_token["token"])
    with token.open(rw=True) as session:
        session.get_key(ObjectClass.PRIVATE_KEY, label=label).destroy()
    with pytest.raises(KeyNotFound):
        pkcs11_store.sign(label, "o", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)


def test_a_second_store_in_the_process_needs_the_same_pin(hsm_token: dict) -> None:
    with pytest.raises(KeyLocked):
        Pkcs11KeyStore(hsm_token["library"], hsm_token["token"], hsm_token["pin"] + "0")


def test_an_unknown_token_is_reported_as_locked(hsm_token: dict) -> None:
    with pytest.raises(KeyLocked, match="no PKCS#11 token"):
        Pkcs11KeyStore(hsm_token["library"], "no-such-token", "1234")
