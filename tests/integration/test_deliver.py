"""Transports against a real aiosmtpd server on 127.0.0.1, and on real directories."""

from __future__ import annotations

import mailbox
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from smtpserver import SmtpSink

from daemon.config import Settings
from daemon.errors import DeliveryError
from daemon.mail.deliver import FileTransport, MaildirTransport, SmtpTransport, message_file_stem, open_transport

SENDER = "bounces@example.com"


def make_msg(n: int, to: str = "ann@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["Message-ID"] = f"<msg-{n}.keynews@example.com>"
    msg["From"] = "keynews <keynews@example.com>"
    msg["To"] = to
    msg["Subject"] = f"digest {n}"
    msg.set_content(f"body {n}\n")
    return msg


def message_ids(sink: SmtpSink) -> list[str]:
    return [str(message_from_bytes(raw, policy=email_policy.default)["Message-ID"]) for _, _, raw in sink.messages]


def smtp_to(sink: SmtpSink, **kw: object) -> SmtpTransport:
    return SmtpTransport(sink.host, sink.port, timeout=5.0, **kw)  # type: ignore[arg-type]


def test_many_messages_one_connection(smtp_sink: SmtpSink) -> None:
    transport = smtp_to(smtp_sink)
    try:
        for n in range(25):
            transport.send(make_msg(n), sender=SENDER, recipients=[f"user{n}@example.com"])
    finally:
        transport.close()
    assert smtp_sink.sessions == 1
    assert transport.connections == 1
    assert message_ids(smtp_sink) == [f"<msg-{n}.keynews@example.com>" for n in range(25)]
    assert [rcpts for _, rcpts, _ in smtp_sink.messages] == [[f"user{n}@example.com"] for n in range(25)]
    assert all(frm == SENDER for frm, _, _ in smtp_sink.messages)


def test_bytes_are_sent_verbatim(smtp_sink: SmtpSink) -> None:
    raw = make_msg(1).as_bytes(policy=email_policy.SMTP)
    transport = smtp_to(smtp_sink)
    transport.send(raw, sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    received = smtp_sink.messages[0][2]
    assert received.replace(b"\r\n", b"\n").rstrip(b"\n") == raw.replace(b"\r\n", b"\n").rstrip(b"\n")


def test_4xx_is_temporary_and_session_stays_usable(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, code=451)
    transport = smtp_to(smtp_sink)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    assert info.value.permanent is False
    assert "451" in str(info.value)
    transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert message_ids(smtp_sink) == ["<msg-2.keynews@example.com>"]
    assert transport.connections == 1


def test_5xx_data_is_permanent(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, code=554)
    transport = smtp_to(smtp_sink)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert info.value.permanent is True


def test_rejected_recipient_is_permanent(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject_rcpt("gone@example.com", code=550)
    transport = smtp_to(smtp_sink)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["gone@example.com"])
    assert info.value.permanent is True
    assert "gone@example.com" in str(info.value)
    # a 4xx on the recipient is temporary
    smtp_sink.reject_rcpt("full@example.com", code=452)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(2), sender=SENDER, recipients=["full@example.com"])
    assert info.value.permanent is False
    transport.send(make_msg(3), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert message_ids(smtp_sink) == ["<msg-3.keynews@example.com>"]


def test_server_down_is_temporary_then_recovers() -> None:
    sink = SmtpSink()  # not started: nothing listens on its port
    transport = smtp_to(sink)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    assert info.value.permanent is False
    with sink:
        transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
        transport.close()
        assert message_ids(sink) == ["<msg-2.keynews@example.com>"]


def test_outage_mid_session_reconnects_once(smtp_sink: SmtpSink) -> None:
    transport = smtp_to(smtp_sink)
    transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    smtp_sink.stop()
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
    assert info.value.permanent is False
    smtp_sink.start()  # same port
    transport.send(make_msg(3), sender=SENDER, recipients=["ann@example.com"])
    # a server restart between two sends is absorbed by the one reconnect
    smtp_sink.stop()
    smtp_sink.start()
    transport.send(make_msg(4), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert message_ids(smtp_sink) == [f"<msg-{n}.keynews@example.com>" for n in (1, 3, 4)]
    assert transport.connections == 3


def test_timeout_is_temporary(smtp_sink: SmtpSink) -> None:
    smtp_sink.delay(3.0)
    transport = SmtpTransport(smtp_sink.host, smtp_sink.port, timeout=0.5)
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert info.value.permanent is False


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    return ctx


def client_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


@pytest.fixture
def tls_sink(tls_files: tuple[Path, Path]) -> Iterator[SmtpSink]:
    with SmtpSink(tls_context=server_context(tls_files), require_starttls=True, auth=("mailer", "pw")) as sink:
        yield sink


def test_starttls_and_login(tls_sink: SmtpSink, tls_files: tuple[Path, Path]) -> None:
    transport = smtp_to(tls_sink, starttls=True, user="mailer", password="pw", tls_context=client_context(tls_files))
    for n in range(3):
        transport.send(make_msg(n), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert len(tls_sink.messages) == 3
    assert tls_sink.sessions == 1
    assert tls_sink.auth_attempts == [("mailer", True)]


def test_bad_password_is_temporary(tls_sink: SmtpSink, tls_files: tuple[Path, Path]) -> None:
    transport = smtp_to(tls_sink, starttls=True, user="mailer", password="wrong", tls_context=client_context(tls_files))
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    assert info.value.permanent is False  # the operator fixes the password; the mail is kept
    assert tls_sink.messages == []


def test_untrusted_certificate_is_temporary(tls_sink: SmtpSink) -> None:
    transport = smtp_to(tls_sink, starttls=True)  # default trust store: self-signed cert refused
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    assert info.value.permanent is False


def test_plaintext_to_starttls_server_is_temporary(tls_sink: SmtpSink) -> None:
    transport = smtp_to(tls_sink)  # forgot starttls: 530 "must issue STARTTLS" is a setup problem
    with pytest.raises(DeliveryError) as info:
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    transport.close()
    assert info.value.permanent is False
    assert tls_sink.messages == []


def test_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    with SmtpSink(implicit_tls_context=server_context(tls_files)) as sink:
        transport = smtp_to(sink, ssl=True, tls_context=client_context(tls_files))
        transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
        transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
        transport.close()
        assert message_ids(sink) == ["<msg-1.keynews@example.com>", "<msg-2.keynews@example.com>"]
        assert sink.sessions == 1


# --------------------------------------------------------------------------- files


def test_file_transport_atomic_and_idempotent(tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    transport = FileTransport(out)
    transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
    again = make_msg(1)
    again.replace_header("Subject", "digest 1 (retry)")
    transport.send(again, sender=SENDER, recipients=["ann@example.com"])
    files = sorted(p.name for p in out.iterdir())
    assert files == ["msg-1.keynews@example.com.eml", "msg-2.keynews@example.com.eml"]  # no tmp left
    parsed = message_from_bytes((out / files[0]).read_bytes(), policy=email_policy.default)
    assert parsed["Subject"] == "digest 1 (retry)"


def test_file_name_is_safe_for_hostile_message_id(tmp_path: Path) -> None:
    raw = b"Message-ID: <../../etc/passwd\x00@x>\r\nSubject: s\r\n\r\nbody\r\n"
    stem = message_file_stem(raw)
    assert "/" not in stem and "\x00" not in stem and not stem.startswith(".")
    FileTransport(tmp_path).send(raw, sender=SENDER, recipients=["a@example.com"])
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path]
    no_id = b"Subject: s\r\n\r\nbody\r\n"
    assert message_file_stem(no_id) == message_file_stem(no_id) != message_file_stem(no_id + b"x")


def test_maildir_transport(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "Maildir")
    transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])
    transport.send(make_msg(2), sender=SENDER, recipients=["ann@example.com"])
    transport.send(make_msg(1), sender=SENDER, recipients=["ann@example.com"])  # a retry
    transport.close()
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=False)
    subjects = sorted(str(m["Subject"]) for m in box)
    assert subjects == ["digest 1", "digest 2"]
    assert list((tmp_path / "Maildir" / "tmp").iterdir()) == []


def test_open_transport_picks_by_settings(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    assert isinstance(open_transport(Settings(outbox_dir=tmp_path / "o")), FileTransport)
    assert isinstance(open_transport(Settings(outbox_dir=tmp_path / "m", outbox_format="maildir")), MaildirTransport)
    smtp = open_transport(Settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port))
    assert isinstance(smtp, SmtpTransport)
    smtp.send(make_msg(7), sender=SENDER, recipients=["ann@example.com"])
    smtp.close()
    assert message_ids(smtp_sink) == ["<msg-7.keynews@example.com>"]
    assert SmtpTransport("mail.example.com", ssl=True).port == 465
    assert SmtpTransport("mail.example.com", starttls=True).port == 587
    assert SmtpTransport("mail.example.com").port == 25
