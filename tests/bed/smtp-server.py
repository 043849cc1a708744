#!/usr/bin/python3
"""A capturing SMTP server for salve's tests (Debian's aiosmtpd): every accepted mail is
written as one JSON file; it never relays anything anywhere.

Run with /usr/bin/python3 (the pyenv python first on PATH cannot import Debian's aiosmtpd):

    /usr/bin/python3 tests/bed/smtp-server.py --dir DIR [--starttls | --implicit-tls]
        [--tlscert CERT --tlskey KEY] [--auth [--password PASSWORD]]

- Listens on 127.0.0.1 on a free port it picks itself (retrying if another process takes
  it first), then writes DIR/ready (the port, atomically) and prints
  "smtp-server ready on 127.0.0.1:PORT".
- Mails land in DIR/mail/NNNNNN.json: {"from", "to", "subject", "body", "headers",
  "tls", "auth_login"} (body: the decoded text/plain part).
- --starttls offers STARTTLS and requires it before MAIL; --implicit-tls speaks TLS from
  the first byte. Both need --tlscert/--tlskey.
- --auth requires AUTH (PLAIN or LOGIN) with TEST_USER/TEST_PASSWORD (or --password, so a
  test can use a password of its own); with TLS on, AUTH is only offered over TLS.
- Failure switch: while DIR/fail exists, MAIL and DATA are answered
  "451 4.3.0 try again later", so a test can make the server refuse, then accept.
- Stops on SIGTERM/SIGINT.
"""

import argparse
import email
import email.policy
import itertools
import json
import os
import signal
import socket
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

TEST_USER = "salve-test"
TEST_PASSWORD = "s3cret-test-password"
FAIL_REPLY = "451 4.3.0 try again later"
# The password AUTH accepts; --password replaces it.
accepted_password = TEST_PASSWORD


class Capture:
    """aiosmtpd handler: stores each mail as JSON; honours the failure switch."""

    def __init__(self, directory, implicit_tls):
        self.directory = directory
        # aiosmtpd sets session.ssl only after STARTTLS; an implicit-TLS server is TLS
        # from the first byte.
        self.implicit_tls = implicit_tls
        self.mail_dir = os.path.join(directory, "mail")
        os.makedirs(self.mail_dir, exist_ok=True)
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    def failing(self):
        return os.path.exists(os.path.join(self.directory, "fail"))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.failing():
            return FAIL_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.failing():
            return FAIL_REPLY
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body_part = message.get_body(preferencelist=("plain",))
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message.get("subject", "")),
            "body": body_part.get_content() if body_part is not None else "",
            # Raw header values (folded lines unfolded), in order, as sent.
            "headers": [[name, str(value)] for name, value in message.items()],
            "tls": self.implicit_tls or session.ssl is not None,
            "auth_login": (
                session.auth_data.login.decode("utf-8", "replace")
                if isinstance(session.auth_data, LoginPassword)
                else None
            ),
        }
        with self.lock:
            number = next(self.counter)
        final = os.path.join(self.mail_dir, f"{number:06}.json")
        temporary = final + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        # Readers only ever see complete files.
        os.rename(temporary, final)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    ok = (
        auth_data.login == TEST_USER.encode()
        and auth_data.password == accepted_password.encode()
    )
    # auth_data is what aiosmtpd keeps in session.auth_data: the capture records the login.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--starttls", action="store_true")
    mode.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--tlscert")
    parser.add_argument("--tlskey")
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--password", default=TEST_PASSWORD)
    args = parser.parse_args()
    global accepted_password
    accepted_password = args.password

    tls_on = args.starttls or args.implicit_tls
    context = None
    if tls_on:
        if not (args.tlscert and args.tlskey):
            parser.error("--starttls/--implicit-tls need --tlscert and --tlskey")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tlscert, args.tlskey)

    # aiosmtpd warns when AUTH is allowed without STARTTLS; that is the point of the
    # plain and implicit-TLS test modes, so keep the log for real problems.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    handler = Capture(args.dir, args.implicit_tls)
    smtp_kwargs = {}
    if args.starttls:
        smtp_kwargs.update(tls_context=context, require_starttls=True)
    if args.auth:
        smtp_kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # With implicit TLS the whole session is encrypted, but aiosmtpd only counts
            # STARTTLS as TLS, so it must not insist on it there.
            auth_require_tls=args.starttls,
        )

    controller = None
    last_error = None
    for _attempt in range(5):
        port = free_port()
        candidate = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            # Implicit TLS: the listening socket itself speaks TLS.
            ssl_context=context if args.implicit_tls else None,
            **smtp_kwargs,
        )
        try:
            candidate.start()
        except OSError as error:  # the port was taken between probe and bind
            last_error = error
            continue
        controller = candidate
        break
    if controller is None:
        print(f"smtp-server: no free port: {last_error}", file=sys.stderr, flush=True)
        sys.exit(1)

    ready = os.path.join(args.dir, "ready")
    with open(ready + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(str(controller.port))
    os.rename(ready + ".tmp", ready)
    print(f"smtp-server ready on 127.0.0.1:{controller.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
