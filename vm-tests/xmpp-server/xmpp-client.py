#!/usr/bin/python3
"""Two XMPP clients log in over STARTTLS (SCRAM) and exchange a message; or
a password guesser.

  xmpp-client.py SERVER_IP DOMAIN CA_FILE ACCOUNTS_FILE
  xmpp-client.py --guess N SERVER_IP DOMAIN CA_FILE
  xmpp-client.py --services SERVER_IP DOMAIN CA_FILE ACCOUNTS_FILE OUT.json

ACCOUNTS_FILE holds two lines "user password" (made by the test at run
time). The server is reached by address, with DOMAIN as the XMPP host and the
TLS name: nothing is resolved. The certificate must verify against CA_FILE.
Exit 0 when the second account received the first one's message.

--services: the first account logs in and asks the server for its STUN and
TURN services (XEP-0215 external service discovery, after checking that
disco#info announces it); the list, with the TURN credentials the server
handed out, goes to OUT.json for turn.py. Exit 0 when at least one TURN
service came with a username and password.

--guess: up to N connections, one after the other, each trying a made-up
account and password, as a guesser would. Prints how each ended; exit 0
when every one was refused (a failed login, the server closing the stream
because the address is blocked, or no answer at all: a firewall ban, after
which it stops).
"""
import asyncio
import json
import logging
import secrets
import sys
import xml.etree.ElementTree as ET

import slixmpp

TIMEOUT = 60
EXTDISCO = "urn:xmpp:extdisco:2"
# A guess the firewall drops gets no answer at all.
GUESS_TIMEOUT = 15


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, server_ip, ca_file):
        super().__init__(jid, password)
        self.server_ip = server_ip
        self.ca_certs = ca_file
        self.ready = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.facts = {}
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("failed_all_auth", lambda _: self.fail("no usable SASL mechanism"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("tls_success", lambda _: self.facts.update(tls=True))
        self.add_event_handler("auth_success", lambda _: self.facts.update(sasl=self.plugin["feature_mechanisms"].mech.name))
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))

    async def get_dns_records(self, domain, port=None):
        # connect() without an address looks the domain up here: the answer
        # is the server's address (IPv4 or IPv6) and the domain stays the
        # TLS and XMPP name. (Given an address that is not IPv4, slixmpp
        # would make the address the TLS name.)
        return [(domain, self.server_ip, port or 5222)]

    def fail(self, why):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.boundjid.bare}: {why}"))

    async def on_session_start(self, _):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)


async def run(server_ip, domain, ca_file, accounts):
    (u1, p1), (u2, p2) = accounts
    a = Client(f"{u1}@{domain}", p1, server_ip, ca_file)
    b = Client(f"{u2}@{domain}", p2, server_ip, ca_file)
    for c in (a, b):
        c.connect(force_starttls=True)
    await asyncio.wait_for(asyncio.gather(a.ready, b.ready), TIMEOUT)
    for c in (a, b):
        print(f"{c.boundjid.full}: logged in, STARTTLS {c.facts.get('tls')}, SASL {c.facts.get('sasl')}")
        if not c.facts.get("tls") or not str(c.facts.get("sasl", "")).startswith("SCRAM-"):
            raise RuntimeError(f"{c.boundjid.bare}: expected STARTTLS and SCRAM, got {c.facts}")
    body = "hardroot test " + secrets.token_hex(8)
    a.send_message(mto=b.boundjid.bare, mbody=body, mtype="chat")
    while True:
        msg = await asyncio.wait_for(b.inbox.get(), TIMEOUT)
        if msg["body"] == body:
            break
    print(f"{b.boundjid.bare} received from {msg['from']}: {body}")
    for c in (a, b):
        c.disconnect()


async def services(server_ip, domain, ca_file, account, out):
    """XEP-0215: the services the server offers this user, with credentials."""
    c = Client(f"{account[0]}@{domain}", account[1], server_ip, ca_file)
    c.register_plugin("xep_0030")
    c.connect(force_starttls=True)
    await asyncio.wait_for(c.ready, TIMEOUT)
    info = await c["xep_0030"].get_info(jid=domain, timeout=TIMEOUT)
    if EXTDISCO not in info["disco_info"]["features"]:
        raise RuntimeError(f"{domain} does not announce {EXTDISCO}")
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = domain
    iq.append(ET.Element(f"{{{EXTDISCO}}}services"))
    reply = await iq.send(timeout=TIMEOUT)
    found = [dict(s.attrib) for s in reply.xml.iter(f"{{{EXTDISCO}}}service")]
    c.disconnect()
    with open(out, "w", encoding="utf-8") as f:
        json.dump(found, f, indent=1)
    for s in found:
        # Never print a password: the list is a test fact, the file the secret.
        print(f"{s.get('type')} {s.get('host')}:{s.get('port')}/{s.get('transport')}"
              f"{' with credentials, expires ' + s.get('expires', '?') if s.get('username') else ''}")
    if not any(s.get("type", "").startswith("turn") and s.get("username") and s.get("password") for s in found):
        raise RuntimeError(f"no TURN service with credentials offered: {found}")


async def guess(server_ip, domain, ca_file, n):
    outcomes = []
    for i in range(n):
        c = Client(f"guess-{secrets.token_hex(4)}@{domain}", secrets.token_hex(8), server_ip, ca_file)
        c.add_event_handler("stream_error", lambda e, c=c: c.fail(f"blocked: {e['condition']}: {e['text']}"))
        c.add_event_handler("disconnected", lambda _, c=c: c.fail("disconnected"))
        c.connect(force_starttls=True)
        try:
            await asyncio.wait_for(c.ready, GUESS_TIMEOUT)
            outcome = "logged in"
        except RuntimeError as e:
            outcome = str(e)
        except asyncio.TimeoutError:
            outcome = f"dropped: no answer within {GUESS_TIMEOUT} s"
        c.cancel_connection_attempt()
        await asyncio.wait_for(c.disconnect(), TIMEOUT)
        print(f"guess {i + 1}: {outcome}", flush=True)
        outcomes.append(outcome)
        # The firewall ban may come before the last guess: nothing more to try.
        if outcome.startswith("dropped"):
            break
    refused = [o for o in outcomes if "authentication failed" in o or "blocked: policy-violation" in o or o.startswith("dropped")]
    if len(refused) != len(outcomes):
        raise RuntimeError(f"expected every guess refused: {outcomes}")


def run_or_exit(coroutine, what):
    try:
        asyncio.get_event_loop().run_until_complete(coroutine)
    except (RuntimeError, asyncio.TimeoutError) as e:
        print(f"{what}: {str(e) or f'timed out after {TIMEOUT} s'}", file=sys.stderr)
        sys.exit(1)


def main(argv):
    logging.basicConfig(level=logging.WARNING)
    if argv[1:2] == ["--guess"]:
        if len(argv) != 6 or not argv[2].isdigit() or int(argv[2]) < 1:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        run_or_exit(guess(argv[3], argv[4], argv[5], int(argv[2])), "guessing")
        return
    if argv[1:2] == ["--services"]:
        if len(argv) != 7:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        accounts = read_accounts(argv[5])
        run_or_exit(services(argv[2], argv[3], argv[4], accounts[0], argv[6]), "XEP-0215 query failed")
        return
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    run_or_exit(run(argv[1], argv[2], argv[3], read_accounts(argv[4])), "XMPP exchange failed")


def read_accounts(path):
    with open(path, encoding="utf-8") as f:
        accounts = [tuple(line.split()) for line in f if line.strip()]
    if len(accounts) != 2 or any(len(a) != 2 for a in accounts):
        print(f"{path}: expected two lines 'user password'", file=sys.stderr)
        sys.exit(2)
    return accounts


if __name__ == "__main__":
    main(sys.argv)
