#!/usr/bin/python3
"""Load and fault clients for the XMPP server (issue 20).

  xmpp-load.py burst SERVER_IP DOMAIN CA ACCOUNTS OUT.json --clients N --messages M
  xmpp-load.py steady SERVER_IP DOMAIN CA ACCOUNTS OUT.json --clients K --interval S
               --stop-file F --status STATUS.json
  xmpp-load.py offline-send SERVER_IP DOMAIN CA ACCOUNTS ACKED.log --to USER --count C
  xmpp-load.py offline-receive SERVER_IP DOMAIN CA ACCOUNTS ACKED.log OUT.json --as USER

Connected as xmpp-client.py connects: by address, DOMAIN the XMPP host and
the TLS name, the certificate verified against CA, STARTTLS on 5222, SCRAM.
ACCOUNTS holds "user password" a line (host-prepare.sh makes it per run).
Every message carries a unique id (the stanza id, and in the body with its
send time: "hl ID SENDER SEND_TIME"), so deliveries are counted by id.

burst: N clients log in concurrently (in waves of --wave, each wave's
  handshakes at once, all staying connected), then each sends M messages
  (client i to i+1..i+M mod N) at once; waits until all arrived. Exit 0 when
  every login worked and every message arrived exactly once.
steady: K clients with stream management (XEP-0198, an ack asked after every
  message) send one message every S seconds each, round robin, until F
  exists, reconnecting after any drop; a message counts as acknowledged only
  once the server's <a h=.../> covers it. After a reconnect that could not
  resume the stream, what was sent but not acknowledged is sent again (same
  id), and the client catches up from its archive (XEP-0313, mod_mam) since
  its last delivery. Then it drains: waits until every acknowledged message
  arrived (a last archive sweep for the missing). STATUS.json is rewritten
  about once a second. Exit 0 when nothing acknowledged was lost.
offline-send: the first account sends C messages to USER (offline), one
  after the other; each id is appended to ACKED.log and fsync'ed as soon as
  the server acknowledged it (a bounce is appended as "bounced ID
  CONDITION"). mod_offline keeps at most max_user_offline_messages (100 for
  all in the profile) per user: more are bounced with resource-constraint.
offline-receive: USER logs in, collects what comes within the settle time
  (the offline spool, after the initial presence), compares with ACKED.log.
  Exit 0 when every acknowledged id arrived.

Each writes its JSON result (also on failure) and prints one summary line.
"""
import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import time
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
DATA = "jabber:x:data"
TAG = "hl"
ASK_ACK = "<r xmlns='urn:xmpp:sm:3'/>"
# One resource per account: a new session replaces the old one, and
# ejabberd's mod_stream_mgmt then re-routes the old session's unacknowledged
# stanzas to it (resend_on_timeout: if_offline, "same resource").
RESOURCE = "load"
log = logging.getLogger("xmpp-load")


def now():
    return time.time()


def read_accounts(path, need):
    with open(path, encoding="utf-8") as f:
        accounts = [tuple(line.split()) for line in f if line.strip()]
    if any(len(a) != 2 for a in accounts) or len(accounts) < need:
        raise SystemExit(f"{path}: expected at least {need} lines 'user password', got {len(accounts)}")
    return accounts


def percentiles(values):
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    v = sorted(values)
    pick = lambda q: round(v[min(len(v) - 1, int(q * len(v)))], 1)
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


def write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class Ledger:
    """Every message by id: who sent it to whom and when, its ack, its deliveries."""

    def __init__(self):
        self.sent = {}        # id -> {"from", "to", "t", "acked": time or None, "resent": n}
        self.received = {}    # id -> [receive times]
        self.latency_ms = []
        self.via_archive = set()
        self.bounced = {}     # id -> [error conditions]
        self.last_delivery = None
        # Ids whose first copy arrived (live or from the archive), as opposed
        # to a copy the sender sent again for want of a receipt.
        self.original_received = set()

    def new_id(self):
        return f"{TAG}-{secrets.token_hex(6)}"

    def deliver(self, mid, t_sent, via_archive=False, resent=False):
        t = now()
        if not resent:
            self.original_received.add(mid)
        first = mid not in self.received
        if via_archive and not first:
            # The archive holds what arrived live too: not a second delivery.
            return
        self.received.setdefault(mid, []).append(t)
        if first:
            self.last_delivery = t
            if via_archive:
                self.via_archive.add(mid)
            elif t_sent is not None:
                self.latency_ms.append((t - t_sent) * 1000)

    def duplicates(self):
        return sum(len(v) - 1 for v in self.received.values())

    def acked_missing(self):
        return [m for m, s in self.sent.items() if s["acked"] is not None and m not in self.received]

    def lost_by_server(self):
        """Acknowledged by the server, and its first copy never arrived: the
        server lost it (only a copy sent again reached the recipient)."""
        return [m for m, s in self.sent.items() if s["acked"] is not None and m not in self.original_received]


class LoadClient(slixmpp.ClientXMPP):
    def __init__(self, index, user, password, args, ledger, sm=False, reconnect=False):
        super().__init__(f"{user}@{args.domain}/{RESOURCE}", password)
        self.index = index
        self.user = user
        self.server_ip = args.server_ip
        self.ca_certs = args.ca
        self.ledger = ledger
        self.reconnect = reconnect
        self.stopping = False
        self.online = False
        self.ready = asyncio.get_event_loop().create_future()
        self.mechanism = None
        self.t_connect = None
        self.t_session = None
        self.sessions = 0
        self.drops = 0
        self.failures = 0
        self.attempts = 0
        self.resumed = 0
        self.windows = []      # [down, up] per disconnection
        self.pending = []      # ids sent, not yet acknowledged, oldest first
        self.mam_queries = {}  # queryid -> future
        self.on_change = lambda: None
        self.sm = sm
        if sm:
            self.add_event_handler("sm_enabled", self.on_sm_enabled)
            self.register_plugin("xep_0198")
            # slixmpp 1.8.3 writes the <r/> of its window straight to the
            # socket from its outgoing filter, before the stanza that filled
            # the window: the answer never covers that stanza (measured:
            # the last message of each client stayed unacknowledged). Its
            # window off; send_tracked asks after each message, in order.
            self.plugin["xep_0198"].window = 2 ** 30
            self.plugin["xep_0198"].window_counter = 2 ** 30
            self.add_event_handler("stanza_acked", self.on_acked)
            # Delivery receipts (XEP-0184): what the recipient confirmed. An
            # ejabberd ack means "handed on", not "delivered" (docs/testing.md):
            # after a stream the server forgot, what was acknowledged but never
            # confirmed is sent again, as a client that keeps its promises must.
            self.register_plugin("xep_0184")
            self.add_event_handler("receipt_received", self.on_receipt)
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("session_resumed", self.on_session_resumed)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("failed_all_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("auth_success", lambda _: setattr(self, "mechanism", self.plugin["feature_mechanisms"].mech.name))
        self.add_event_handler("message", self.on_message)
        # Archive results come as messages slixmpp's "message" event does
        # not pass on (measured): a handler of their own.
        self.register_handler(Callback("MAM result", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
                                       lambda m: self.on_archived(m.xml.find(f"{{{MAM}}}result"))))

    async def get_dns_records(self, domain, port=None):
        # As xmpp-client.py: the address given, the domain stays the TLS and XMPP name.
        return [(domain, self.server_ip, port or 5222)]

    def start(self):
        self.t_connect = self.t_connect or now()
        self.connect(force_starttls=True)

    def fail(self, why):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.user}: {why}"))

    # ---- session ---------------------------------------------------------------

    def on_session_start(self, _):
        # A new session (not a resumed one): the server forgot the stream.
        self.sessions += 1
        self.t_session = self.t_session or now()
        self.send_presence()
        if not self.sm:
            self.came_up()
        if not self.ready.done():
            self.ready.set_result(True)

    def on_sm_enabled(self, _):
        # Stream management starts after session_start (slixmpp binds, then
        # enables): what is sent before <enabled/> would never be acked.
        self.came_up()
        if self.sessions > 1:
            # Sent, never acknowledged, and the stream is gone: send again
            # (same id; a copy the server did take shows up as a duplicate).
            # A client with nothing pending must still look at its receipts
            # below: what the server acknowledged and then lost with its
            # memory is not pending any more.
            again, self.pending = self.pending, []
            for mid in again:
                self.ledger.sent[mid]["resent"] += 1
                self.send_tracked(mid)
            # Acknowledged, never confirmed by the recipient: the server may
            # have lost it with its memory. Sent again (same id: a copy that
            # did arrive is a duplicate the recipient recognises).
            for mid, s in list(self.ledger.sent.items()):
                if s["from"] == self.user and s["acked"] is not None and s.get("receipt") is None and mid not in again:
                    s["resent_for_receipt"] = s.get("resent_for_receipt", 0) + 1
                    self.send_tracked(mid, again=True)
        if self.sessions > 1 and self.catch_up is not None:
            asyncio.ensure_future(self.catch_up(self))

    def on_session_resumed(self, _):
        self.resumed += 1
        self.came_up()

    def came_up(self):
        self.online = True
        self.failures = 0
        if self.windows and self.windows[-1][1] is None:
            self.windows[-1][1] = now()
        self.on_change()

    def on_disconnected(self, reason):
        was = self.online
        self.online = False
        if was:
            self.drops += 1
            self.failures = 0
            self.windows.append([now(), None])
        self.on_change()
        self.later_retry()

    def on_connection_failed(self, why):
        if not self.reconnect:
            self.fail(f"connection failed: {why}")
            return
        # slixmpp's own retry backs off to minutes; a short one of ours instead.
        self.cancel_connection_attempt()
        self.later_retry()

    def later_retry(self):
        if not self.reconnect or self.stopping:
            return
        # 0.5 s after a drop, then doubling to 5 s: a failed login (the
        # database down) counts for mod_fail2ban and CrowdSec.
        delay = min(5.0, 0.5 * 2 ** self.failures)
        self.failures += 1
        self.attempts += 1
        asyncio.get_event_loop().call_later(delay, self.retry)

    def retry(self):
        if not self.stopping and self.transport is None and self._current_connection_attempt is None:
            self.connect(force_starttls=True)

    catch_up = None

    # ---- messages --------------------------------------------------------------

    def message_to(self, mid, to_user, t_sent, again=False):
        body = f"{TAG} {mid} {self.user} {t_sent:.6f}" + (" resent" if again else "")
        m = self.make_message(mto=f"{to_user}@{self.boundjid.domain}", mbody=body, mtype="chat")
        m["id"] = mid
        if self.sm:
            m["request_receipt"] = True
        return m

    def send_tracked(self, mid, again=False):
        s = self.ledger.sent[mid]
        self.pending.append(mid)
        self.message_to(mid, s["to"], s["t"], again).send()
        if self.sm:
            # Through the send queue, so after the message.
            self.send(ASK_ACK)

    def send_new(self, to_user):
        mid = self.ledger.new_id()
        t = now()
        self.ledger.sent[mid] = {"from": self.user, "to": to_user, "t": t, "acked": None, "resent": 0}
        self.send_tracked(mid)
        return mid

    def on_acked(self, stanza):
        if not isinstance(stanza, slixmpp.Message):
            return
        mid = stanza["id"]
        s = self.ledger.sent.get(mid)
        if s is None:
            return
        if s["acked"] is None:
            s["acked"] = now()
        if mid in self.pending:
            self.pending.remove(mid)
        self.on_acked_hook(mid)

    def on_acked_hook(self, mid):
        pass

    def on_receipt(self, msg):
        s = self.ledger.sent.get(msg["receipt"])
        if s is not None and s.get("receipt") is None:
            s["receipt"] = now()

    resend_bounced = False

    def resend(self, mid):
        if mid in self.ledger.received or mid in self.pending:
            return
        self.ledger.sent[mid]["resent"] += 1
        if self.online:
            self.send_tracked(mid)
        else:
            self.pending.append(mid)

    def on_message(self, msg):
        result = msg.xml.find(f"{{{MAM}}}result")
        if result is not None:
            self.on_archived(result)
            return
        if msg["type"] == "error":
            mid = msg["id"]
            if mid in self.ledger.sent:
                self.ledger.bounced.setdefault(mid, []).append(msg["error"]["condition"])
                if self.resend_bounced and not self.stopping:
                    # The server said it did not deliver: send again, as a
                    # user would, once the condition may have passed.
                    asyncio.get_event_loop().call_later(2.0, self.resend, mid)
            return
        self.take(msg["body"], via_archive=False)

    def take(self, body, via_archive):
        parts = (body or "").split()
        if len(parts) not in (4, 5) or parts[0] != TAG:
            return
        try:
            t_sent = float(parts[3])
        except ValueError:
            t_sent = None
        self.ledger.deliver(parts[1], t_sent, via_archive, resent=len(parts) == 5)

    # ---- XEP-0313: the archive since a time ------------------------------------

    def on_archived(self, result):
        fwd = result.find(f"{{{FORWARD}}}forwarded")
        inner = fwd.find("{jabber:client}message") if fwd is not None else None
        if inner is None:
            return
        to = (inner.get("to") or "").split("/")[0]
        if to != self.boundjid.bare:
            return
        body = inner.find("{jabber:client}body")
        self.take(body.text if body is not None else "", via_archive=True)

    async def archive_since(self, start, timeout=60):
        """Every message of our archive since start (paged); deliveries go through take()."""
        after = None
        pages = 0
        while True:
            iq = self.make_iq_set()
            q = ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": secrets.token_hex(4)})
            x = ET.SubElement(q, f"{{{DATA}}}x", {"type": "submit"})
            for var, value in (("FORM_TYPE", MAM), ("start", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)))):
                f = ET.SubElement(x, f"{{{DATA}}}field", {"var": var})
                if var == "FORM_TYPE":
                    f.set("type", "hidden")
                ET.SubElement(f, f"{{{DATA}}}value").text = value
            rsm = ET.SubElement(q, f"{{{RSM}}}set")
            ET.SubElement(rsm, f"{{{RSM}}}max").text = "200"
            if after:
                ET.SubElement(rsm, f"{{{RSM}}}after").text = after
            reply = await iq.send(timeout=timeout)
            pages += 1
            fin = reply.xml.find(f"{{{MAM}}}fin")
            last = fin.find(f"{{{RSM}}}set/{{{RSM}}}last") if fin is not None else None
            if fin is None or fin.get("complete") == "true" or last is None or pages > 100:
                return pages
            after = last.text


def base_args(p, *extra):
    for name in ("server_ip", "domain", "ca", "accounts") + extra:
        p.add_argument(name)


# ---- burst -----------------------------------------------------------------------

async def burst(args, result):
    accounts = read_accounts(args.accounts, args.clients)[: args.clients]
    ledger = Ledger()
    clients = [LoadClient(i, u, p, args, ledger) for i, (u, p) in enumerate(accounts)]
    result.update(clients=len(clients), messages_per_client=args.messages, wave=args.wave)
    t0 = now()
    failures = []
    for w in range(0, len(clients), args.wave):
        wave = clients[w: w + args.wave]
        for c in wave:
            c.start()
        done = await asyncio.gather(*(asyncio.wait_for(asyncio.shield(c.ready), args.login_timeout) for c in wave), return_exceptions=True)
        failures += [f"{c.user}: {d!r}" for c, d in zip(wave, done) if d is not True]
    ok = [c for c in clients if c.ready.done() and not c.ready.exception()]
    t_last = max((c.t_session for c in ok), default=t0)
    mechs = sorted({c.mechanism for c in ok if c.mechanism})
    result.update(logins_ok=len(ok), login_failures=failures[:20], login_seconds=round(t_last - t0, 2),
                  logins_per_second=round(len(ok) / max(t_last - t0, 1e-6), 1), mechanism=mechs[0] if len(mechs) == 1 else mechs)
    n = len(clients)
    for c in ok:
        for k in range(1, args.messages + 1):
            c.send_new(clients[(c.index + k) % n].user)
    expected = set(ledger.sent)
    deadline = now() + args.timeout
    while now() < deadline and not expected <= set(ledger.received):
        await asyncio.sleep(0.2)
    # A moment more for duplicates to show.
    await asyncio.sleep(1)
    missing = sorted(expected - set(ledger.received))
    result.update(sent=len(ledger.sent), delivered=len(expected & set(ledger.received)),
                  duplicates=ledger.duplicates(), missing=len(missing), missing_ids=missing[:50],
                  bounced=ledger.bounced, latency_ms=percentiles(ledger.latency_ms))
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    result["ok"] = (len(ok) == n and not missing and result["duplicates"] == 0
                    and result["sent"] == n * args.messages and str(result["mechanism"]).startswith("SCRAM-"))
    return (f"burst: {len(ok)}/{n} logged in ({result['mechanism']}) in {result['login_seconds']} s, "
            f"{result['delivered']}/{result['sent']} delivered, {result['duplicates']} duplicates, "
            f"latency p50/p95/p99 {result['latency_ms']['p50']}/{result['latency_ms']['p95']}/{result['latency_ms']['p99']} ms")


# ---- steady ----------------------------------------------------------------------

async def steady(args, result):
    accounts = read_accounts(args.accounts, args.clients)[: args.clients]
    ledger = Ledger()
    clients = [LoadClient(i, u, p, args, ledger, sm=True, reconnect=True) for i, (u, p) in enumerate(accounts)]
    k = len(clients)
    t_start = now()
    # Connected-count windows: when fewer than K were up, and for how long.
    state = {"windows": [], "mam_catchups": 0, "mam_errors": [], "relogins": []}

    def on_change():
        n = sum(c.online for c in clients)
        w = state["windows"]
        if n < k and (not w or w[-1]["end"] is not None):
            if any(c.sessions for c in clients) and all(c.sessions for c in clients):
                w.append({"start": now(), "end": None, "min_connected": n})
        elif w and w[-1]["end"] is None:
            w[-1]["min_connected"] = min(w[-1]["min_connected"], n)
            if n == k:
                w[-1]["end"] = now()

    async def catch_up(c, since=None, wait=2.0):
        # From a little before the newest delivery this client saw (or the
        # start): what the archive holds that the stream lost. A moment
        # after the session came up: a message routed while the recipient
        # was between sessions lands in its archive (and the offline spool)
        # a little after it logged in (measured: up to 0.2 s).
        await asyncio.sleep(wait)
        if since is None:
            mine = [max(ts) for mid, ts in ledger.received.items() if ledger.sent.get(mid, {}).get("to") == c.user]
            since = (max(mine) if mine else t_start) - 5
        try:
            await c.archive_since(since)
            state["mam_catchups"] += 1
        except Exception as e:  # an archive unreachable now (PostgreSQL down): the drain sweeps again
            state["mam_errors"].append(f"{c.user} {now():.1f}: {e!r}")

    for c in clients:
        c.on_change = on_change
        c.catch_up = catch_up if args.mam else None
        c.resend_bounced = True
        c.start()

    def status():
        write_json(args.status, {"t": now(), "connected": sum(c.online for c in clients),
                                 "acked": sum(1 for s in ledger.sent.values() if s["acked"] is not None),
                                 "received": len(ledger.received), "last_delivery": ledger.last_delivery})

    async def status_loop():
        while True:
            status()
            await asyncio.sleep(1)

    st = asyncio.ensure_future(status_loop())
    await asyncio.wait_for(asyncio.gather(*(asyncio.shield(c.ready) for c in clients)), args.login_timeout)

    async def sender(c):
        await asyncio.sleep(args.interval * c.index / k)
        turn = 0
        while not os.path.exists(args.stop_file):
            # A client down sends nothing: its user would not either.
            if c.online:
                turn = turn % (k - 1) + 1
                c.send_new(clients[(c.index + turn) % k].user)
            await asyncio.sleep(args.interval)

    await asyncio.gather(*(sender(c) for c in clients))
    t_stop = now()
    # Drain: what was sent and not acknowledged keeps going (resent after a
    # reconnect); everything acknowledged must arrive.
    deadline = t_stop + args.drain_timeout
    # A message routed to a recipient between two sessions goes to the
    # offline spool, and one stored just after the new session read the
    # spool waits there for the next login (docs/testing.md, measured): so a
    # recipient still missing something after a while logs in afresh once,
    # as its user would next time. The spool is durable: that is delivery.
    t_relogin = t_stop + min(20.0, args.drain_timeout / 3)
    while now() < deadline and (ledger.acked_missing() or any(c.pending for c in clients) or not all(c.online for c in clients)):
        if now() > t_relogin:
            waiting = {ledger.sent[m]["to"] for m in ledger.acked_missing()}
            for c in clients:
                if c.user in waiting and c.online and c.user not in state["relogins"]:
                    state["relogins"].append(c.user)
                    c.plugin["xep_0198"].sm_id = None  # a new session, not a resumed one
                    c.disconnect()
        await asyncio.sleep(0.5)
    if args.mam and ledger.acked_missing():
        # A last sweep of each recipient's archive for what is still missing.
        for c in clients:
            mine = [ledger.sent[m]["t"] for m in ledger.acked_missing() if ledger.sent[m]["to"] == c.user]
            if c.online and mine:
                await catch_up(c, since=min(mine) - 60, wait=0)
    for c in clients:
        c.stopping = True
    st.cancel()
    status()
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)

    acked = [m for m, s in ledger.sent.items() if s["acked"] is not None]
    lost = [{"id": m, "from": ledger.sent[m]["from"], "to": ledger.sent[m]["to"],
             "sent": round(ledger.sent[m]["t"], 3), "acked": round(ledger.sent[m]["acked"], 3),
             "bounced": ledger.bounced.get(m)} for m in ledger.acked_missing()]
    unacked = [m for m, s in ledger.sent.items() if s["acked"] is None]
    result.update(
        clients=k, interval=args.interval, seconds=round(t_stop - t_start, 1), drain_seconds=round(now() - t_stop, 1),
        sent=len(ledger.sent), acked=len(acked), received=len(ledger.received),
        received_via_archive=len(ledger.via_archive), via_archive_ids=sorted(ledger.via_archive)[:50],
        receipts=sum(1 for s in ledger.sent.values() if s.get("receipt") is not None),
        resent_for_receipt=sum(s.get("resent_for_receipt", 0) for s in ledger.sent.values()),
        lost_by_server=len(ledger.lost_by_server()), lost_by_server_ids=sorted(ledger.lost_by_server())[:50],
        lost=lost, duplicates=ledger.duplicates(),
        resent=sum(s["resent"] for s in ledger.sent.values()),
        unacked_at_end=len(unacked), unacked_not_received=len([m for m in unacked if m not in ledger.received]),
        bounced=ledger.bounced,
        reconnects={"total": sum(c.resumed + c.sessions - 1 for c in clients), "resumed": sum(c.resumed for c in clients),
                    "new_sessions": sum(c.sessions - 1 for c in clients), "drops": sum(c.drops for c in clients),
                    "attempts": sum(c.attempts for c in clients),
                    "per_client": {c.user: {"drops": c.drops, "resumed": c.resumed, "new_sessions": c.sessions - 1,
                                            "attempts": c.attempts} for c in clients}},
        disconnect_windows=[{"start": round(w["start"], 2), "seconds": round((w["end"] or now()) - w["start"], 2),
                             "min_connected": w["min_connected"]} for w in state["windows"]],
        client_windows={c.user: [[round(a, 2), round(b, 2) if b else None] for a, b in c.windows] for c in clients if c.windows},
        relogins=state["relogins"], mam=args.mam, mam_catchups=state["mam_catchups"], mam_errors=state["mam_errors"][:20],
        latency_ms=percentiles(ledger.latency_ms))
    result["ok"] = not lost and len(acked) > 0
    return (f"steady: {k} clients {result['seconds']} s, {len(acked)} acked, {len(ledger.received)} received "
            f"({len(ledger.via_archive)} from the archive), {len(lost)} lost ({result['lost_by_server']} lost by the server, "
            f"{result['resent_for_receipt']} sent again for want of a receipt), {result['duplicates']} duplicates, "
            f"{result['reconnects']['total']} reconnects ({result['reconnects']['resumed']} resumed)")


# ---- offline ---------------------------------------------------------------------

async def offline_send(args, result):
    user, password = read_accounts(args.accounts, 1)[0]
    ledger = Ledger()
    c = LoadClient(0, user, password, args, ledger, sm=True, reconnect=True)
    fd = os.open(args.acked_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    dfd = os.open(os.path.dirname(os.path.abspath(args.acked_log)), os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)

    def append(line):
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)

    acked = asyncio.Queue()
    c.on_acked_hook = acked.put_nowait
    c.start()
    await asyncio.wait_for(c.ready, args.login_timeout)
    while not c.online:
        await asyncio.sleep(0.05)
    bounced_seen = set()
    for _ in range(args.count):
        await asyncio.sleep(args.gap)
        mid = c.send_new(args.to)
        while True:
            got = await asyncio.wait_for(acked.get(), args.ack_timeout)
            append(got)
            if got == mid:
                break
        for b, cond in ledger.bounced.items():
            if b not in bounced_seen:
                bounced_seen.add(b)
                append(f"bounced {b} {cond[0]}")
    # Bounces come after the ack: a moment for the last ones.
    await asyncio.sleep(2)
    for b, cond in ledger.bounced.items():
        if b not in bounced_seen:
            append(f"bounced {b} {cond[0]}")
    os.close(fd)
    c.stopping = True
    await c.disconnect()
    n = sum(1 for s in ledger.sent.values() if s["acked"] is not None)
    result.update(sent=len(ledger.sent), acked=n, bounced=ledger.bounced, to=args.to)
    result["ok"] = n == args.count and not ledger.bounced
    return f"offline-send: {n}/{args.count} acknowledged to {args.to}, {len(ledger.bounced)} bounced"


def read_acked_log(path):
    acked, bounced = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split()
            if len(w) == 1:
                acked.append(w[0])
            elif len(w) >= 2 and w[0] == "bounced":
                bounced.add(w[1])
    return [m for m in dict.fromkeys(acked) if m not in bounced], bounced


async def offline_receive(args, result):
    accounts = dict(read_accounts(args.accounts, 1))
    if args.as_user not in accounts:
        raise SystemExit(f"{args.accounts}: no account {args.as_user}")
    ledger = Ledger()
    c = LoadClient(0, args.as_user, accounts[args.as_user], args, ledger)
    acked, bounced = read_acked_log(args.acked_log)
    c.start()
    await asyncio.wait_for(c.ready, args.login_timeout)
    # The spool comes after the initial presence; then until nothing new for the settle time.
    deadline = now() + args.timeout
    seen, quiet_since = -1, now()
    while now() < deadline:
        if len(ledger.received) != seen:
            seen, quiet_since = len(ledger.received), now()
        elif now() - quiet_since >= args.settle and set(acked) <= set(ledger.received):
            break
        elif now() - quiet_since >= max(args.settle, 3 * args.settle):
            break
        await asyncio.sleep(0.2)
    await c.disconnect()
    lost = [m for m in acked if m not in ledger.received]
    result.update(acked=len(acked), bounced=len(bounced), received=len(ledger.received), lost=lost,
                  duplicates=ledger.duplicates(),
                  received_not_acked=sorted(set(ledger.received) - set(acked)))
    result["ok"] = not lost
    return (f"offline-receive: {len(ledger.received)} received, {len(acked)} acknowledged, {len(lost)} lost, "
            f"{result['duplicates']} duplicates, {len(result['received_not_acked'])} received but not acknowledged")


# ---- main ------------------------------------------------------------------------

def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("burst")
    base_args(p, "out")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--messages", type=int, default=2)
    p.add_argument("--wave", type=int, default=25, help="logins started at once (the rest wait for them)")
    p.add_argument("--login-timeout", type=float, default=300)
    p.add_argument("--timeout", type=float, default=300, help="for all messages to arrive")
    p = sub.add_parser("steady")
    base_args(p, "out")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--drain-timeout", type=float, default=180)
    p.add_argument("--login-timeout", type=float, default=300)
    p.add_argument("--no-mam", dest="mam", action="store_false", help="no archive catch-up (XEP-0313)")
    p = sub.add_parser("offline-send")
    base_args(p, "acked_log")
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--login-timeout", type=float, default=300)
    p.add_argument("--ack-timeout", type=float, default=120)
    p.add_argument("--out", help="its JSON result (default ACKED.log.json)")
    p.add_argument("--gap", type=float, default=0, help="seconds between messages")
    p = sub.add_parser("offline-receive")
    base_args(p, "acked_log", "out")
    p.add_argument("--as", dest="as_user", required=True)
    p.add_argument("--settle", type=float, default=10)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--login-timeout", type=float, default=300)
    return ap.parse_args(argv)


def main(argv):
    logging.basicConfig(level=logging.WARNING if not os.environ.get("XMPP_LOAD_DEBUG") else logging.DEBUG)
    args = parse(argv)
    run = {"burst": burst, "steady": steady, "offline-send": offline_send, "offline-receive": offline_receive}[args.cmd]
    result = {"command": args.cmd, "started": now(), "ok": False}
    out = getattr(args, "out", None) or (f"{args.acked_log}.json" if args.cmd == "offline-send" else None)
    loop = asyncio.get_event_loop()
    try:
        summary = loop.run_until_complete(run(args, result))
    except (Exception, asyncio.TimeoutError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        summary = f"{args.cmd}: failed: {result['error']}"
    # slixmpp's per-client tasks outlive their disconnect: end them quietly.
    rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in rest:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
    result["finished"] = now()
    if out:
        write_json(out, result)
    print(summary, flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
