"""`capkey cert …` in-process, with the test double of the device behind `Device.open` (so the
CLI's own `_open` and its error sentences run)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from fake_certkey import FakeCertKey, FakeKeyLink

from capkey._cli import device as device_cli
from capkey._cli.__main__ import cli
from capkey._cli.util import CliFail
from capkey.cert.ca import CertificateAuthority


@pytest.fixture
def run(tmp_path, monkeypatch):
    link = FakeKeyLink(FakeCertKey(), chosen_slot=1)

    @contextlib.contextmanager
    def fake_open(url, *, hello_timeout):
        yield link

    monkeypatch.setattr(device_cli, "Device", SimpleNamespace(open=fake_open))
    monkeypatch.setenv("CAPKEY_CA", str(tmp_path / "ca"))
    monkeypatch.setenv("CAPKEY_CA_PASSWORD", "s3cret-pass")

    def run(*argv, ok=True):
        """Runs the CLI in-process; re-raises anything but an expected CliFail."""
        result = CliRunner().invoke(cli, list(argv))
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit | CliFail):
            raise exc
        assert (exc is None) is ok, result.output
        return result

    run.link = link
    return run


def test_ca_provision_enrol_list_revoke(run, tmp_path):
    run("cert", "ca", "init", "--name", "Banque Exemple")
    assert b"ENCRYPTED" in (tmp_path / "ca/issuing.key.pem").read_bytes()
    run("cert", "provision", "--device", "socket://x")
    out = run(
        "cert",
        "enrol",
        "--device",
        "socket://x",
        "--slot",
        "2",
        "--subscription",
        "123456789",
        "--user",
        "01",
    ).output
    # slots are numbered 1-4 as on the device's screen ("Emplacement 2"), 0-3 on the link
    assert "slot 2:" in out and "UID=01" in out
    assert set(run.link.key.certificates) == {1}
    listing = run("cert", "list", "--device", "socket://x").output
    assert "PIN tries left: 8 (before unplugging: 3)" in listing
    assert "[2] CN=123456789 01" in listing and "[1] empty" in listing
    assert "[0]" not in listing and "[4] empty" in listing
    ca = CertificateAuthority.load(tmp_path / "ca", password=b"s3cret-pass")
    (record,) = ca.issued()
    assert record.slot == 1
    issued = run("cert", "issued").output
    assert issued.count("valid") == 1 and " slot 2 " in issued
    assert "Slot 2 erased." in run("cert", "delete", "--device", "socket://x", "--slot", "2").output
    assert not run.link.key.slots
    run("cert", "revoke", record.fingerprint, "--reason", "key_compromise")
    assert "revoked" in run("cert", "issued").output
    crl = ca.published_crls()[1]
    assert crl.get_revoked_certificate_by_serial_number(int(record.serial_number, 16))
    assert "certificates: 1 (revoked 1)" in run("cert", "ca", "show").output


def test_enrol_without_provisioning_is_refused(run):
    run("cert", "ca", "init", "--name", "B")
    result = run(
        "cert",
        "enrol",
        "--device",
        "socket://x",
        "--slot",
        "1",
        "--subscription",
        "1",
        "--user",
        "1",
        ok=False,
    )
    assert "never provisioned" in str(result.exception)
    assert not run.link.key.certificates


@pytest.mark.parametrize("slot", ["0", "5"])
def test_slot_numbers_are_the_devices_1_to_4(run, slot):
    run("cert", "ca", "init", "--name", "B")
    for argv in (("cert", "enrol", "--subscription", "1", "--user", "1"), ("cert", "delete")):
        result = run(*argv, "--device", "socket://x", "--slot", slot, ok=False)
        assert result.exit_code == 2 and "1<=x<=4" in result.output
    assert not run.link.key.slots


def test_wrong_password(run, monkeypatch):
    run("cert", "ca", "init", "--name", "B")
    monkeypatch.setenv("CAPKEY_CA_PASSWORD", "wrong")
    assert "unreadable CA" in str(run("cert", "issued", ok=False).exception)
