"""The EAR token-signing key in an HSM (PKCS#11, SoftHSM2 here).

SoftHSM2 tests skip cleanly when softhsm2 or python-pkcs11 is missing; the
configuration tests need neither.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, sim_platform
from tests.keys_fixtures import serve_kbs
from tests.test_keyring_pkcs11 import PIN_ENV, SoftHsm, _assert_no_pin, _close, _raw_session, hsm
from veritee.appraisal.ear import (
    Signer,
    Submod,
    TokenSigner,
    ec_thumbprint,
    issue_ear,
    verify_ear,
)
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.keyring import seal, unseal
from veritee.cli.main import main
from veritee.errors import ConfigError, SignatureError
from veritee.server.bootstrap import init_data_dir, open_service
from veritee.server.config import (
    FileTokenSignerConfig,
    Pkcs11TokenSignerConfig,
    ServiceConfig,
)
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["hsm", "sim_platform"]

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def _signer(hsm: SoftHsm, token: str, key: str, *, create: bool = False) -> Any:
    from veritee.broker.signer_pkcs11 import Pkcs11TokenSigner

    factory = Pkcs11TokenSigner.create if create else Pkcs11TokenSigner.open
    return factory(hsm.module, token, key, hsm.pins[token])


def _token(signer: Signer) -> str:
    submod = Submod.appraise({"hardware": 2}, "policy:test", {"claim": "value"})
    return issue_ear(
        signer, {"cpu0": submod}, now=NOW, ttl=dt.timedelta(minutes=5), verifier_build="test"
    )


def _signer_section(hsm: SoftHsm, token: str, key: str) -> str:
    return (
        "\n[token_signer]\n"
        'type = "pkcs11"\n'
        f'module = "{hsm.module}"\n'
        f'token_label = "{token}"\n'
        f'key_label = "{key}"\n'
        f'pin_env = "{PIN_ENV}"\n'
    )


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["submods"]["cpu0"]["ear.status"] = "affirming"
    claims["iss"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# -- the signer itself -----------------------------------------------------------------------


def test_hsm_tokens_verify_with_verify_ear_and_joserfc(hsm: SoftHsm) -> None:
    from joserfc import jwt
    from joserfc.errors import BadSignatureError
    from joserfc.jwk import ECKey, KeySet

    with _signer(hsm, "veritee-a", "signer-verify", create=True) as signer:
        assert isinstance(signer, TokenSigner)
        jwk = signer.public_jwk()
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and jwk["alg"] == "ES256"
        assert signer.kid == ec_thumbprint(jwk["crv"], jwk["x"], jwk["y"]) == jwk["kid"]
        # joserfc computes the same RFC 7638 thumbprint on its own.
        assert ECKey.import_key(jwk).thumbprint() == signer.kid
        tokens = [_token(signer) for _ in range(3)]
        assert len({t.split(".")[2] for t in tokens}) == 3  # ECDSA: a fresh nonce each time
        for token in tokens:
            claims = verify_ear(token, [signer.public_jwk()], now=NOW)
            assert claims["submods"]["cpu0"]["ear.status"] == "affirming"  # type: ignore[index]
            decoded = jwt.decode(token, KeySet.import_key_set(signer.jwks()), algorithms=["ES256"])
            assert decoded.header["kid"] == signer.kid
            assert decoded.claims["iss"] == "veritee"
        # A changed payload under the HSM's signature fails both verifiers.
        with pytest.raises(SignatureError):
            verify_ear(_tamper(tokens[0]), [signer.public_jwk()], now=NOW)
        with pytest.raises(BadSignatureError):
            jwt.decode(_tamper(tokens[0]), KeySet.import_key_set(signer.jwks()))
        # And a software key's tokens are not this key's.
        with pytest.raises(SignatureError):
            verify_ear(_token(TokenSigner.generate()), [signer.public_jwk()], now=NOW)
        first_kid = signer.kid
        assert hsm.pins["veritee-a"] not in repr(signer)
    with _signer(hsm, "veritee-a", "signer-verify") as again:
        assert again.kid == first_kid  # the same key at the next start
        verify_ear(_token(again), [jwk], now=NOW)  # verifies under the key published before
    with pytest.raises(ConfigError, match="already exists"):
        _signer(hsm, "veritee-a", "signer-verify", create=True)


def test_the_private_key_is_not_extractable(hsm: SoftHsm, tmp_path: Path) -> None:
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11 import exceptions as p11e

    signer = _signer(hsm, "veritee-a", "signer-locked", create=True)
    try:
        with pytest.raises(ConfigError, match="cannot be written"):
            signer.save_pem(tmp_path / "out.pem")
        assert not (tmp_path / "out.pem").exists()
    finally:
        signer.close()
    session = _raw_session(hsm, "veritee-a")
    try:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="signer-locked")
        assert key.key_type == KeyType.EC
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True  # generated in the token, never out
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SIGN] is True
        assert key[Attribute.DECRYPT] is False and key[Attribute.DERIVE] is False
        with pytest.raises(p11e.AttributeSensitive):
            _ = key[Attribute.VALUE]
        wrapper = session.generate_key(KeyType.AES, 256, label="exporter", store=False)
        with pytest.raises((p11e.KeyUnextractable, p11e.KeyNotWrappable)):
            wrapper.wrap_key(key)
    finally:
        session.close()


def test_hsm_key_shares_the_module_with_the_hsm_kek_across_threads(hsm: SoftHsm) -> None:
    """Signing and KEK wraps from many threads at once, one login, one module lock."""
    keyring = hsm.keyring("veritee-b", "kek-shared", create=True)
    signer = _signer(hsm, "veritee-b", "signer-shared", create=True)
    errors: list[str] = []

    def sign_many() -> None:
        try:
            for _ in range(15):
                verify_ear(_token(signer), [signer.public_jwk()], now=NOW)
        except Exception as exc:
            errors.append(repr(exc))

    def wrap_many() -> None:
        try:
            for i in range(15):
                value = secrets.token_bytes(40)
                aad = b"default/t/%d" % i
                assert unseal(keyring, seal(keyring, value, aad), aad) == value
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=f) for f in (sign_many, wrap_many) * 3]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
    finally:
        _close(keyring)
        signer.close()


# -- startup -----------------------------------------------------------------------------------


def test_wrong_pin_fails_at_startup_with_a_clear_error(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _signer(hsm, "veritee-pin", "signer", create=True).close()
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(_signer_section(hsm, "veritee-pin", "signer"))
    wrong = "wrong-" + secrets.token_hex(4)
    monkeypatch.setenv(PIN_ENV, wrong)
    with pytest.raises(ConfigError) as started:
        open_service(ServiceConfig.load(data_dir))
    assert "refused the user PIN" in str(started.value)
    assert "veritee-pin" in str(started.value)
    assert "token_signer.pin_env" in str(started.value)  # says which setting to fix
    _assert_no_pin(started.value, wrong, hsm.pins["veritee-pin"])
    assert wrong not in caplog.text and hsm.pins["veritee-pin"] not in caplog.text

    monkeypatch.delenv(PIN_ENV)
    with pytest.raises(ConfigError, match=f"environment variable {PIN_ENV} is empty or missing"):
        open_service(ServiceConfig.load(data_dir))
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-pin"])
    (data_dir / "config.toml").write_text(
        (data_dir / "config.toml").read_text().replace('"signer"', '"absent"')
    )
    with pytest.raises(ConfigError, match="no EC private key labelled 'absent'") as absent:
        open_service(ServiceConfig.load(data_dir))
    assert "token_signer.key_label" in str(absent.value)

    # With the right PIN and label the same directory starts, signing with the HSM key.
    (data_dir / "config.toml").write_text(
        (data_dir / "config.toml").read_text().replace('"absent"', '"signer"')
    )
    service = open_service(ServiceConfig.load(data_dir))
    try:
        from veritee.broker.signer_pkcs11 import Pkcs11TokenSigner

        assert isinstance(service.broker.signer, Pkcs11TokenSigner)
        local = TokenSigner.load_pem(data_dir / "token-signer.pem")
        assert service.broker.signer.kid != local.kid
    finally:
        _close(service)
        service.broker.signer.close()  # type: ignore[attr-defined]


def test_kbs_flow_with_the_hsm_signer_and_the_hsm_kek_on_one_token(
    hsm: SoftHsm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sim_platform: SimulatedSnpPlatform,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    from veritee.broker.keyring_pkcs11 import Pkcs11Keyring
    from veritee.broker.signer_pkcs11 import Pkcs11TokenSigner

    hsm.keyring("veritee-a", "kek-kbs", create=True).close()
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-a"])
    args = ["keyring", "create-signer", "--module", str(hsm.module), "--token-label", "veritee-a"]
    args += ["--key-label", "signer-kbs", "--pin-env", PIN_ENV]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert hsm.pins["veritee-a"] not in printed
    section = printed[printed.index("[token_signer]") : printed.index("tokens are then")]
    assert main(args) == 1  # never replaces a signing key
    made = _signer(hsm, "veritee-a", "signer-kbs")
    made.close()
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(hsm.config_section("veritee-a", "kek-kbs"))
        handle.write("\n" + section)
    with serve_kbs(data_dir, sim_platform) as kbs:
        broker = kbs.service.broker
        assert isinstance(broker.signer, Pkcs11TokenSigner)
        assert isinstance(broker.keyring, Pkcs11Keyring)
        jwks = httpx.get(f"{kbs.url}/.well-known/jwks.json").json()
        assert jwks == broker.signer.jwks() and jwks["keys"][0]["kid"] == made.kid
        with KbsClient(kbs.url) as client:
            att = client.attest(SimulatedSnpProvider(sim_platform, measurement=GOOD_MEASUREMENT))
            # The HSM-signed token is accepted by the resource route, by cookie and bearer.
            assert client.get_resource("default/disk/key") == SECRET
            assert client.get_resource("default/disk/key", use_bearer=True) == SECRET
            # It verifies with the published JWKS, in veritee and in joserfc.
            claims = verify_ear(att.token, jwks["keys"], now=broker.clock())
            assert jwt.decode(att.token, KeySet.import_key_set(jwks), algorithms=["ES256"])
            header = json.loads(base64.urlsafe_b64decode(att.token.split(".")[0] + "=="))
            assert header["kid"] == made.kid

            # The same claims signed by any other key are refused by the resource route.
            other = TokenSigner.generate()
            payload_b64 = att.token.split(".")[1]
            payload = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
            assert json.loads(payload) == claims
            forged_header = {**header, "kid": other.kid, "jwk": other.public_jwk()}
            client.token = other.sign_compact(forged_header, payload)
            with pytest.raises(KbsRefused) as refused:
                client.get_resource("default/disk/key", use_bearer=True)
            assert refused.value.status == 401

        # With the HSM signer gone, attestation answers 503 "retry later", and issues nothing.
        broker.signer.close()
        with KbsClient(kbs.url) as late, pytest.raises(KbsRefused) as unavailable:
            late.attest(SimulatedSnpProvider(sim_platform, measurement=GOOD_MEASUREMENT))
        assert unavailable.value.status == 503 and late.token is None


# -- configuration -------------------------------------------------------------------------


def _load_with(tmp_path: Path, text: str) -> ServiceConfig:
    data_dir = tmp_path / "cfg"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "config.toml").write_text(text)
    return ServiceConfig.load(data_dir)


def test_default_token_signer_is_todays_pem_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    init_data_dir(data_dir)
    config = ServiceConfig.load(data_dir)
    assert config.token_signer is None
    assert config.token_signer_config == FileTokenSignerConfig(data_dir / "token-signer.pem")
    assert config.token_key_path == data_dir / "token-signer.pem"
    service = open_service(config)
    try:
        assert type(service.broker.signer) is TokenSigner
        assert service.broker.signer.kid == TokenSigner.load_pem(config.token_key_path).kid
    finally:
        _close(service)


def test_token_signer_config_sections(tmp_path: Path) -> None:
    cfg = _load_with(
        tmp_path,
        '[token_signer]\ntype = "pkcs11"\nmodule = "/usr/lib/x.so"\ntoken_label = "t"\n'
        'pin_env = "HSM_PIN"\n',
    )
    assert cfg.token_signer == Pkcs11TokenSignerConfig(
        Path("/usr/lib/x.so"), "t", "veritee-token-signer", "HSM_PIN"
    )
    assert cfg.token_key_path == tmp_path / "cfg" / "token-signer.pem"
    cfg = _load_with(tmp_path, '[token_signer]\ntype = "file"\npath = "keys/signer.pem"\n')
    assert cfg.token_signer_config == FileTokenSignerConfig(tmp_path / "cfg" / "keys/signer.pem")
    assert cfg.token_key_path == tmp_path / "cfg" / "keys/signer.pem"  # what backup reads


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\npin = "123456"\n', "holds a PIN"),
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\nuser_pin = "987654"\n', "PIN"),
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\npin_env = "1 x"\n', "pin_env"),
        ('type = "pkcs11"\ntoken_label = "t"\n', "module is required"),
        ('type = "pkcs11"\nmodule = "/m.so"\n', "token_label is required"),
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\npath = "x.pem"\n', "only appl"),
        ('type = "file"\nkey_label = "k"\n', "only apply"),
        ('type = "tpm"\n', "must be"),
        ('type = "file"\nkeylabel = "k"\n', "unknown key"),
    ],
)
def test_bad_token_signer_sections_are_refused(
    tmp_path: Path, section: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load_with(tmp_path, "[token_signer]\n" + section)
    assert "123456" not in str(caught.value) and "987654" not in str(caught.value)
