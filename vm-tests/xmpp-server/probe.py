#!/usr/bin/python3
"""Exposure probes for the XMPP VM test, run on the host inside a client namespace.

  probe.py reach TABLE V4 V6 OUT.json
      Connects from this client host to every row of the guest's exposure table
      (/etc/hardroot/exposure.tsv), v4 and v6, and records what happened.
  probe.py check TABLE REACH.json trusted|untrusted
      Compares one client's results with what each row's exposure promises.
  probe.py matrix TABLE SS.txt COUNTED.tsv OUT.json NAME=REACH.json...
      Joins the guest's listening sockets (ss -tulpnH), the firewall's ACCEPT
      counters for public UDP ports (udp-counted.sh) and every client's
      results into the exposure matrix (exposure.json) the report reads.

Probe states: open (connected / a STUN answer), refused (the firewall let the
packet through and the kernel answered "port closed"), prohibited (the
firewall's REJECT: ICMP host/admin prohibited), silent (no answer: a DROP, or
for UDP a service that did not answer).
"""
import concurrent.futures
import errno
import ipaddress
import json
import os
import socket
import struct
import sys

TCP_TIMEOUT = 3.0
# Seconds to wait after each send: 7.5 s in all before a port counts as silent.
UDP_RETRANSMIT = (0.5, 1.0, 2.0, 4.0)
PROHIBITED = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM}


def read_table(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            service, proto, port, port_end, exposure, bind = line.rstrip("\n").split("\t")
            rows.append({
                "service": service,
                "proto": proto,
                "port": int(port),
                "port_end": int(port_end),
                "exposure": exposure,
                "bind": [] if bind == "*" else bind.split(","),
            })
    return rows


def probe_ports(row):
    """A range is probed at both ends; nothing listens there until a TURN
    allocation, so the answer shows whether the firewall lets it through."""
    if row["port_end"]:
        return [row["port"], row["port_end"]]
    return [row["port"]]


def probe_tcp(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(TCP_TIMEOUT)
        try:
            s.connect((addr, port))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "silent"
        except OSError as e:
            if e.errno in PROHIBITED:
                return "prohibited"
            return "error:" + errno.errorcode.get(e.errno, str(e.errno))


def stun_binding_request():
    # RFC 5389: Binding request, no attributes, magic cookie, random transaction id.
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)


def probe_udp(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, port))
            # Retransmit as a STUN client does (RFC 5389 7.2.1, RTO doubling):
            # ejabberd answers the first request it ever gets only after
            # loading its STUN code, slower than one timeout under TCG.
            for wait in UDP_RETRANSMIT:
                s.send(stun_binding_request())
                s.settimeout(wait)
                try:
                    reply = s.recv(2048)
                except socket.timeout:
                    continue
                # A STUN Binding success response starts with 0x0101.
                return "open" if reply[:2] == b"\x01\x01" else "open-other"
            return "silent"
        except ConnectionRefusedError:
            return "refused"
        except OSError as e:
            if e.errno in PROHIBITED:
                return "prohibited"
            return "error:" + errno.errorcode.get(e.errno, str(e.errno))


def reach(table, v4, v6, out):
    rows = read_table(table)
    jobs = []
    for i, row in enumerate(rows):
        for fam, addr in (("ipv4", v4), ("ipv6", v6)):
            for port in probe_ports(row):
                jobs.append((i, fam, addr, port, row["proto"]))
    probe = {"tcp": probe_tcp, "udp": probe_udp}
    # In parallel: silent probes each wait for their timeout.
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        states = list(pool.map(lambda j: probe[j[4]](j[2], j[3]), jobs))
    results = [{"ipv4": {}, "ipv6": {}} for _ in rows]
    for (i, fam, _, port, _), state in zip(jobs, states):
        results[i][fam][str(port)] = state
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"server": {"ipv4": v4, "ipv6": v6}, "rows": rows, "results": results}, f, indent=1)


def binds_family(row, fam):
    """Whether the row's socket accepts connections on the server's address of that family."""
    if not row["bind"]:
        return True
    for b in row["bind"]:
        if b in ("0.0.0.0", "::"):
            # "::" is dual-stack unless v6only; ejabberd's "::" serves v4 too.
            if b == "::" or fam == "ipv4":
                return True
        elif fam == "ipv4" and ":" not in b and not b.startswith("127."):
            return True
        elif fam == "ipv6" and ":" in b and not ipaddress.ip_address(b).is_loopback:
            return True
    return False


def expected(row, fam, trusted):
    """The set of acceptable probe states for one row, family and client."""
    passes = row["exposure"] == "public" or (row["exposure"] == "trusted" and trusted)
    if not passes:
        # localhost, blocked, or trusted from an untrusted source: the firewall
        # must stop it (REJECT or DROP), whatever the socket's bind.
        return {"prohibited", "silent"}
    if row["port_end"]:
        # A range with nothing allocated: the firewall passes, the kernel refuses.
        return {"open", "refused"}
    if row["proto"] == "udp":
        # A STUN answer, or silence (a UDP service may ignore the probe, and
        # silence also looks like a DROP), so test.rhai checks the firewall's
        # ACCEPT counters for these ports as well.
        return {"open", "silent"}
    return {"open"} if binds_family(row, fam) else {"refused"}


def check(table, reach_file, role):
    trusted = role == "trusted"
    with open(reach_file, encoding="utf-8") as f:
        data = json.load(f)
    rows = read_table(table)
    problems = []
    lines = []
    for row, res in zip(rows, data["results"]):
        for fam in ("ipv4", "ipv6"):
            ok_states = expected(row, fam, trusted)
            for port, state in res[fam].items():
                what = f'{row["service"]} {port}/{row["proto"]} ({row["exposure"]}) over {fam}: {state}'
                lines.append(what)
                if state not in ok_states:
                    problems.append(f'{what}, expected {" or ".join(sorted(ok_states))}')
    print(f"{role}: {len(lines)} probes")
    print("\n".join(lines))
    if problems:
        print(f"\n{role}: {len(problems)} probe(s) disagree with the exposure table:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


def listening_addrs(ss_file, row):
    """Local addresses of the guest's sockets for this row (ss -tulpnH)."""
    first, last = row["port"], row["port_end"] or row["port"]
    addrs = []
    with open(ss_file, encoding="utf-8") as f:
        for line in f:
            cols = line.split()
            if len(cols) < 5 or cols[0] != row["proto"]:
                continue
            addr, _, port = cols[4].rpartition(":")
            if port.isdigit() and first <= int(port) <= last:
                addrs.append(addr.strip("[]").split("%")[0])
    return sorted(set(addrs))


def reachable(states, ok):
    return any(s in ok for s in states.values())


def read_counted(path):
    """port -> {"ipv4": packets, "ipv6": packets} from udp-counted.sh."""
    counted = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.split()
            if len(cols) == 3:
                counted[int(cols[0])] = {"ipv4": int(cols[1]), "ipv6": int(cols[2])}
    return counted


def matrix(table, ss_file, counted_file, out, clients):
    rows = read_table(table)
    counted = read_counted(counted_file)
    probes = {}
    for spec in clients:
        name, _, path = spec.partition("=")
        with open(path, encoding="utf-8") as f:
            probes[name] = json.load(f)
    server = next(iter(probes.values()))["server"] if probes else {}
    listeners = []
    for i, row in enumerate(rows):
        addrs = listening_addrs(ss_file, row)
        entry = dict(row, listening=bool(addrs), listening_on=addrs, reachable={}, passes_firewall={}, probes={})
        if row["proto"] == "udp" and row["port"] in counted and not row["port_end"]:
            # A service that stays silent: the firewall's ACCEPT rule counted
            # the probes of all clients (per family), see udp-counted.sh.
            entry["firewall_accept_packets"] = counted[row["port"]]
        for name, data in probes.items():
            res = data["results"][i]
            entry["probes"][name] = res
            # reachable: a client could talk to the service; passes_firewall:
            # the packet got to the guest's stack (open, or closed port).
            entry["reachable"][name] = {f: reachable(res[f], {"open"}) for f in ("ipv4", "ipv6")}
            entry["passes_firewall"][name] = {f: reachable(res[f], {"open", "refused"}) for f in ("ipv4", "ipv6")}
        listeners.append(entry)
    doc = {"format": 1, "server": server, "clients": sorted(probes), "listeners": listeners}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main(argv):
    if len(argv) == 6 and argv[1] == "reach":
        reach(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 5 and argv[1] == "check":
        check(argv[2], argv[3], argv[4])
    elif len(argv) >= 6 and argv[1] == "matrix":
        matrix(argv[2], argv[3], argv[4], argv[5], argv[6:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
