#!/usr/bin/python3
"""A STUN/TURN client (RFC 5389, RFC 8656 ex-5766) in the standard library, for the tests.

  turn.py [--bind=ADDR] binding SERVER PORT
      One Binding request (retransmitted as RFC 5389 7.2.1 says); prints a
      JSON line. Exit 0 when the answer is a Binding success whose
      XOR-MAPPED-ADDRESS is this client's own address and port.
  turn.py peer ADDR[,ADDR...] PEER_FILE COUNT TIMEOUT
      A plain UDP host: binds each ADDR (port chosen by the kernel), writes
      "ip port" lines to PEER_FILE, and answers every datagram with
      "echo:<datagram> from <ip> <port>" (the address it came from) until it
      has answered COUNT datagrams or TIMEOUT seconds have passed.
  turn.py [--bind=ADDR] relay SERVER PORT udp|tls SERVICES.json PEER_FILE FAMILY RELAY_MIN RELAY_MAX [TLS_NAME CA_FILE]
      Takes the TURN credentials for PORT from SERVICES.json (what the
      server handed out over XEP-0215, xmpp-client.py --services),
      allocates a relay of FAMILY (ipv4|ipv6), lets the peer of that family
      in (CreatePermission), exchanges datagrams with it through the relay
      by Send/Data indications and then over a bound channel (ChannelBind,
      ChannelData), and frees the relay. Exit 0 when every datagram came
      back from the peer, and the peer saw each one arrive from the relayed
      address, a port in RELAY_MIN..RELAY_MAX. Prints one JSON line of facts.

Every request after the first Allocate carries MESSAGE-INTEGRITY (HMAC-SHA1,
long-term credentials) and FINGERPRINT; every answer to one must carry a
valid MESSAGE-INTEGRITY too, or the client gives up.
"""
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import select
import socket
import ssl
import struct
import sys
import time

MAGIC = 0x2112A442
# Methods and classes (RFC 5389 6, RFC 8656 17).
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, CHANNEL_BIND = 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9
REQUEST, INDICATION, SUCCESS, ERROR = 0x000, 0x010, 0x100, 0x110
# Attributes.
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, REALM, NONCE = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015
XOR_MAPPED_ADDRESS, CHANNEL_NUMBER, LIFETIME, XOR_PEER_ADDRESS, DATA_ATTR = 0x0020, 0x000C, 0x000D, 0x0012, 0x0013
XOR_RELAYED_ADDRESS, REQUESTED_ADDRESS_FAMILY, REQUESTED_TRANSPORT = 0x0016, 0x0017, 0x0019
SOFTWARE, FINGERPRINT = 0x8022, 0x8028
FINGERPRINT_XOR = 0x5354554E
UDP_PROTO = 17
FIRST_CHANNEL = 0x4000
# RFC 5389 7.2.1: RTO 500 ms, doubled each time, Rc = 7 sends, the last
# waited for Rm = 16 RTOs: 39.5 s in all before a request counts as lost.
RTO, RC, RM = 0.5, 7, 16
EXCHANGES = 3


class StunError(Exception):
    pass


# ---- encoding -------------------------------------------------------------------------


def msg_type(method, cls):
    """The 14 bits of method and class interleaved as RFC 5389 6 draws them."""
    m = method
    return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | cls


def split_type(t):
    cls = t & 0x0110
    m = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    return m, cls


def attr(kind, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def xor_address(ip, port, txid):
    """XOR-MAPPED/PEER/RELAYED-ADDRESS value (RFC 5389 15.2)."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    mask = struct.pack("!I", MAGIC) + txid
    family = 2 if len(packed) == 16 else 1
    xored = bytes(a ^ b for a, b in zip(packed, mask))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC >> 16)) + xored


def parse_xor_address(value, txid):
    family, xport = struct.unpack("!xBH", value[:4])
    size = 4 if family == 1 else 16
    mask = struct.pack("!I", MAGIC) + txid
    packed = bytes(a ^ b for a, b in zip(value[4:4 + size], mask))
    af = socket.AF_INET if family == 1 else socket.AF_INET6
    return socket.inet_ntop(af, packed), xport ^ (MAGIC >> 16)


def encode(method, cls, attrs, txid, key=None):
    """A whole message: attributes, then MESSAGE-INTEGRITY when a key is
    given (the header's length already counting it, RFC 5389 15.4), then
    FINGERPRINT (CRC-32 of all before it, the length counting it, 15.5)."""
    body = b"".join(attr(k, v) for k, v in attrs)

    def header(length):
        return struct.pack("!HHI", msg_type(method, cls), length, MAGIC) + txid

    if key is not None:
        mac = hmac.new(key, header(len(body) + 24) + body, hashlib.sha1).digest()
        body += attr(MESSAGE_INTEGRITY, mac)
    crc = binascii.crc32(header(len(body) + 8) + body) ^ FINGERPRINT_XOR
    body += attr(FINGERPRINT, struct.pack("!I", crc))
    return header(len(body)) + body


def decode(data):
    """(method, class, txid, [(attr, value, offset)]) or StunError."""
    if len(data) < 20:
        raise StunError("shorter than a STUN header")
    t, length, magic = struct.unpack("!HHI", data[:8])
    if t & 0xC000 or magic != MAGIC or len(data) < 20 + length:
        raise StunError("not a STUN message")
    attrs, off = [], 20
    while off + 4 <= 20 + length:
        kind, size = struct.unpack("!HH", data[off:off + 4])
        attrs.append((kind, data[off + 4:off + 4 + size], off))
        off += 4 + size + (4 - size % 4) % 4
    method, cls = split_type(t)
    return method, cls, data[8:20], attrs


def check_fingerprint(data, attrs):
    for kind, value, off in attrs:
        if kind == FINGERPRINT:
            head = data[:2] + struct.pack("!H", off + 8 - 20) + data[4:off]
            if struct.unpack("!I", value)[0] != binascii.crc32(head) ^ FINGERPRINT_XOR:
                raise StunError("bad FINGERPRINT")


def check_integrity(data, attrs, key):
    """The answer's MESSAGE-INTEGRITY must be the server's HMAC with our key."""
    for kind, value, off in attrs:
        if kind == MESSAGE_INTEGRITY:
            head = data[:2] + struct.pack("!H", off + 24 - 20) + data[4:off]
            if not hmac.compare_digest(value, hmac.new(key, head, hashlib.sha1).digest()):
                raise StunError("bad MESSAGE-INTEGRITY in the answer")
            return
    raise StunError("answer without MESSAGE-INTEGRITY")


def get(attrs, kind):
    return next((v for k, v, _ in attrs if k == kind), None)


def error_code(attrs):
    v = get(attrs, ERROR_CODE)
    if v is None:
        return 0, ""
    return (v[2] & 0x7) * 100 + v[3], v[4:].decode(errors="replace")


# ---- transports --------------------------------------------------------------------------


class Udp:
    """A connected UDP socket: requests are retransmitted, answers matched by id."""

    def __init__(self, server, port, source=None):
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((server, port))
        self.retransmits = 0

    def local(self):
        return self.sock.getsockname()[:2]

    def send(self, data):
        self.sock.send(data)

    def recv(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        return self.sock.recv(65536) if r else None

    def request(self, data, txid, budget=None):
        """Sends and resends until an answer with this transaction id comes.
        budget: seconds, defaults to RFC 5389's 39.5 s."""
        deadline = time.monotonic() + (budget or RTO * (2 ** (RC - 1) - 1 + RM))
        rto, sends = RTO, 0
        while time.monotonic() < deadline:
            self.send(data)
            sends += 1
            wait_until = min(time.monotonic() + (rto if sends < RC else RM * RTO), deadline)
            while True:
                reply = self.recv(wait_until - time.monotonic())
                if reply is None:
                    break
                if len(reply) >= 20 and reply[8:20] == txid:
                    self.retransmits += sends - 1
                    return reply
            rto *= 2
        raise StunError(f"no answer after {sends} sends")


class Tls:
    """TURN over TLS on TCP: STUN messages and ChannelData framed by their lengths."""

    def __init__(self, server, port, name, ca_file, source=None):
        ctx = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((server, port), timeout=30, source_address=(source, 0) if source else None)
        self.sock = ctx.wrap_socket(raw, server_hostname=name)
        self.version = self.sock.version()
        self.buf = b""
        self.retransmits = 0

    def local(self):
        return self.sock.getsockname()[:2]

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout):
        """One whole message (STUN, or ChannelData padded to 4 over a stream)."""
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            need = self.frame_size()
            if need and len(self.buf) >= need:
                frame, self.buf = self.buf[:need], self.buf[need:]
                return frame
            left = deadline - time.monotonic()
            if left <= 0 and not self.sock.pending():
                return None
            self.sock.settimeout(max(left, 0.01))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise StunError("the server closed the TLS connection")
            self.buf += chunk

    def frame_size(self):
        if len(self.buf) < 4:
            return 0
        first, length = struct.unpack("!HH", self.buf[:4])
        if first >> 14 == 1:  # ChannelData
            return 4 + length + (4 - length % 4) % 4
        return 20 + length

    def request(self, data, txid, budget=39.5):
        # A reliable transport: no retransmission (RFC 5389 7.2.2), one timeout.
        self.send(data)
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            reply = self.recv(deadline - time.monotonic())
            if reply is not None and len(reply) >= 20 and reply[8:20] == txid:
                return reply
        raise StunError(f"no answer within {budget} s")


# ---- Binding -------------------------------------------------------------------------


def binding(server, port, budget=None, source=None):
    """One Binding request. Returns a dict of facts; 'ok' when the mapped
    address is this client's own (no NAT in between)."""
    t = Udp(server, port, source)
    txid = os.urandom(12)
    started = time.monotonic()
    facts = {"server": server, "port": port}
    try:
        reply = t.request(encode(BINDING, REQUEST, [], txid), txid, budget)
    except StunError as e:
        return dict(facts, ok=False, state="silent", error=str(e))
    facts["seconds"] = round(time.monotonic() - started, 3)
    facts["retransmits"] = t.retransmits
    try:
        method, cls, _, attrs = decode(reply)
        check_fingerprint(reply, attrs)
    except StunError as e:
        return dict(facts, ok=False, state="open-other", error=str(e))
    if (method, cls) != (BINDING, SUCCESS) or get(attrs, XOR_MAPPED_ADDRESS) is None:
        return dict(facts, ok=False, state="open-other", error=f"answer {method:#x}/{cls:#x} {error_code(attrs)}")
    mapped = parse_xor_address(get(attrs, XOR_MAPPED_ADDRESS), txid)
    local = t.local()
    own = ipaddress.ip_address(mapped[0]) == ipaddress.ip_address(local[0]) and mapped[1] == local[1]
    facts.update(mapped=list(mapped), local=list(local), ok=own, state="open" if own else "open-other")
    return facts


# ---- TURN ------------------------------------------------------------------------------


class Session:
    """One TURN allocation over one transport with long-term credentials."""

    def __init__(self, transport, username, password):
        self.t = transport
        self.username = username.encode()
        self.password = password.encode()
        self.realm = self.nonce = self.key = None

    def signed(self, method, attrs):
        """A request with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY; a
        stale nonce (438) is replaced once, as RFC 5389 10.2.4 asks."""
        for _ in range(2):
            txid = os.urandom(12)
            creds = [(USERNAME, self.username), (REALM, self.realm), (NONCE, self.nonce)]
            reply = self.t.request(encode(method, REQUEST, creds + attrs, txid, self.key), txid)
            m, cls, _, got = decode(reply)
            check_fingerprint(reply, got)
            code, why = error_code(got)
            if cls == ERROR and code == 438 and get(got, NONCE):
                self.nonce = get(got, NONCE)
                continue
            if cls != SUCCESS:
                raise StunError(f"method {method:#x} refused: {code} {why}")
            check_integrity(reply, got, self.key)
            return got, txid
        raise StunError(f"method {method:#x}: stale nonce twice")

    def allocate(self, family):
        """The first Allocate has no credentials: its 401 brings realm and nonce."""
        txid = os.urandom(12)
        want = [(REQUESTED_TRANSPORT, struct.pack("!Bxxx", UDP_PROTO))]
        if family == "ipv6":
            want.append((REQUESTED_ADDRESS_FAMILY, struct.pack("!Bxxx", 2)))
        reply = self.t.request(encode(ALLOCATE, REQUEST, want, txid), txid)
        _, cls, _, got = decode(reply)
        code, why = error_code(got)
        if cls != ERROR or code != 401 or not get(got, REALM) or not get(got, NONCE):
            raise StunError(f"an Allocate without credentials must be challenged (401): {cls:#x} {code} {why}")
        self.realm, self.nonce = get(got, REALM), get(got, NONCE)
        self.key = hashlib.md5(self.username + b":" + self.realm + b":" + self.password).digest()
        got, txid = self.signed(ALLOCATE, want)
        relayed = parse_xor_address(get(got, XOR_RELAYED_ADDRESS), txid)
        mapped = parse_xor_address(get(got, XOR_MAPPED_ADDRESS), txid)
        lifetime = struct.unpack("!I", get(got, LIFETIME))[0] if get(got, LIFETIME) else None
        return relayed, mapped, lifetime

    def channel_bind(self, peer, number):
        self.signed_peer(CHANNEL_BIND, peer, [(CHANNEL_NUMBER, struct.pack("!Hxx", number))])

    def signed_peer(self, method, peer, extra):
        """A signed request carrying XOR-PEER-ADDRESS (masked with its own id)."""
        for _ in range(2):
            txid = os.urandom(12)
            creds = [(USERNAME, self.username), (REALM, self.realm), (NONCE, self.nonce)]
            attrs = [(XOR_PEER_ADDRESS, xor_address(peer[0], peer[1], txid))] + extra
            reply = self.t.request(encode(method, REQUEST, creds + attrs, txid, self.key), txid)
            _, cls, _, got = decode(reply)
            check_fingerprint(reply, got)
            code, why = error_code(got)
            if cls == ERROR and code == 438 and get(got, NONCE):
                self.nonce = get(got, NONCE)
                continue
            if cls != SUCCESS:
                raise StunError(f"method {method:#x} refused: {code} {why}")
            check_integrity(reply, got, self.key)
            return got
        raise StunError(f"method {method:#x}: stale nonce twice")

    def send_indication(self, peer, payload):
        txid = os.urandom(12)
        attrs = [(XOR_PEER_ADDRESS, xor_address(peer[0], peer[1], txid)), (DATA_ATTR, payload)]
        self.t.send(encode(SEND, INDICATION, attrs, txid))

    def send_channel(self, number, payload):
        pad = b"\0" * ((4 - len(payload) % 4) % 4) if isinstance(self.t, Tls) else b""
        self.t.send(struct.pack("!HH", number, len(payload)) + payload + pad)

    def receive(self, timeout):
        """The next datagram from a peer: (peer, payload, 'data'|'channel')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.t.recv(deadline - time.monotonic())
            if frame is None:
                break
            if frame[0] >> 6 == 1:
                number, length = struct.unpack("!HH", frame[:4])
                return number, frame[4:4 + length], "channel"
            method, cls, txid, attrs = decode(frame)
            if (method, cls) == (DATA, INDICATION):
                return parse_xor_address(get(attrs, XOR_PEER_ADDRESS), txid), get(attrs, DATA_ATTR), "data"
        raise StunError(f"no datagram through the relay within {timeout} s")

    def free(self):
        self.signed(REFRESH, [(LIFETIME, struct.pack("!I", 0))])


def read_peers(path, timeout=120):
    """The peer's addresses, once it has written them."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise StunError(f"{path}: the peer never said where it listens")
        time.sleep(0.2)
    with open(path, encoding="utf-8") as f:
        return [(ip, int(port)) for ip, port in (line.split() for line in f if line.strip())]


def turn_credentials(services_file, port, transport):
    """The entry XEP-0215 gave for this TURN port and transport."""
    with open(services_file, encoding="utf-8") as f:
        services = json.load(f)
    kind = "turns" if transport == "tls" else "turn"
    proto = "tcp" if transport == "tls" else "udp"
    for s in services:
        if s.get("type") == kind and s.get("transport") == proto and int(s.get("port", 0)) == port and s.get("username"):
            return s["username"], s["password"]
    raise StunError(f"no {kind} service with credentials on port {port}/{proto} in {services_file}: {services}")


def exchange(session, peer, relayed, relay_range):
    """Datagrams to the peer and back, first by indications, then on a channel.
    The peer's echo names the source it saw: it must be the relayed address."""
    sent = []
    lo, hi = relay_range
    for i in range(2 * EXCHANGES):
        payload = f"hardroot-turn-{os.urandom(4).hex()}-{i}".encode()
        by_channel = i >= EXCHANGES
        if by_channel:
            session.send_channel(FIRST_CHANNEL, payload)
        else:
            session.send_indication(peer, payload)
        source, echo, how = session.receive(20)
        want = b"echo:" + payload + b" from "
        if not echo or not echo.startswith(want):
            raise StunError(f"unexpected datagram {echo!r} by {how}")
        seen_ip, seen_port = echo[len(want):].decode().split()
        if (seen_ip, int(seen_port)) != tuple(relayed) or not lo <= int(seen_port) <= hi:
            raise StunError(f"the peer saw {seen_ip} {seen_port}, not the relayed address {relayed} in {lo}-{hi}")
        if by_channel and source != FIRST_CHANNEL or not by_channel and tuple(source) != tuple(peer):
            raise StunError(f"the answer came by {how} from {source}")
        sent.append(how)
        if i == EXCHANGES - 1:
            session.channel_bind(peer, FIRST_CHANNEL)
    return sent


def relay(argv, source=None):
    server, port, transport, services, peer_file, family = argv[:6]
    relay_range = (int(argv[6]), int(argv[7]))
    port = int(port)
    username, password = turn_credentials(services, port, transport)
    t = Tls(server, port, argv[8], argv[9], source) if transport == "tls" else Udp(server, port, source)
    facts = {"server": server, "port": port, "transport": transport, "family": family,
             "tls": getattr(t, "version", None)}
    session = Session(t, username, password)
    relayed, mapped, lifetime = session.allocate(family)
    facts.update(relayed=list(relayed), mapped=list(mapped), lifetime=lifetime, local=list(t.local()))
    peer = next((p for p in read_peers(peer_file) if (":" in p[0]) == (family == "ipv6")), None)
    if peer is None:
        raise StunError(f"the peer has no {family} address")
    session.signed_peer(CREATE_PERMISSION, peer, [])
    facts["peer"] = list(peer)
    facts["exchanged"] = exchange(session, peer, relayed, relay_range)
    session.free()
    facts["ok"] = True
    return facts


def peer(argv):
    """Echoes datagrams with the source it saw, on every address given."""
    addrs, out, count, timeout = argv[0].split(","), argv[1], int(argv[2]), float(argv[3])
    socks = []
    for a in addrs:
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, 0))
        socks.append(s)
    with open(out + ".new", "w", encoding="utf-8") as f:
        for s in socks:
            f.write("%s %d\n" % s.getsockname()[:2])
    os.replace(out + ".new", out)
    seen, deadline = [], time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        ready, _, _ = select.select(socks, [], [], deadline - time.monotonic())
        for s in ready:
            data, src = s.recvfrom(65536)
            s.sendto(b"echo:" + data + (" from %s %d" % src[:2]).encode(), src)
            seen.append([src[0], src[1]])
    print(json.dumps({"peer": [list(s.getsockname()[:2]) for s in socks], "echoed": len(seen), "from": seen}))
    return len(seen) >= count


def main(argv):
    # --bind=ADDR: the client's own address, where the host has several.
    source = next((a.split("=", 1)[1] for a in argv if a.startswith("--bind=")), None)
    argv = [a for a in argv if not a.startswith("--bind=")]
    try:
        if len(argv) == 4 and argv[1] == "binding":
            facts = binding(argv[2], int(argv[3]), source=source)
            print(json.dumps(facts))
            return 0 if facts["ok"] else 1
        if len(argv) == 6 and argv[1] == "peer":
            return 0 if peer(argv[2:]) else 1
        if len(argv) in (10, 12) and argv[1] == "relay":
            print(json.dumps(relay(argv[2:], source)))
            return 0
    except (StunError, OSError, ValueError) as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
