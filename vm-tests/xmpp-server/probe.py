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

Probe states: open (TCP: connected; UDP: a STUN Binding success whose
XOR-MAPPED-ADDRESS is this client's own address and port, turn.py),
open-other (UDP: an answer, but not that one), refused (the firewall let the
packet through and the kernel answered "port closed"), prohibited (the
firewall's REJECT: ICMP host/admin prohibited), silent (no answer: a DROP, or
for UDP a service that did not answer within a STUN client's 39.5 s).
"""
import concurrent.futures
import errno
import ipaddress
import json
import os
import socket
import sys

import turn

TCP_TIMEOUT = 3.0
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


# A port the firewall must stop only has to stay silent as long as a DROP
# would: no need to wait out a whole STUN transaction.
UDP_SILENT_BUDGET = 7.5


def probe_udp(addr, port, public):
    """Every single UDP port of the table is STUN (ejabberd's listeners):
    a Binding request, retransmitted as RFC 5389 7.2.1 says (39.5 s for a
    public port before it counts as silent). Returns (state, facts): how
    long the answer took and how often it was asked, for the record."""
    try:
        facts = turn.binding(addr, port, None if public else UDP_SILENT_BUDGET)
        return facts["state"], facts
    except ConnectionRefusedError:
        return "refused", None
    except OSError as e:
        if e.errno in PROHIBITED:
            return "prohibited", None
        return "error:" + errno.errorcode.get(e.errno, str(e.errno)), None


def reach(table, v4, v6, out):
    rows = read_table(table)
    jobs = []
    for i, row in enumerate(rows):
        for fam, addr in (("ipv4", v4), ("ipv6", v6)):
            for port in probe_ports(row):
                jobs.append((i, fam, addr, port, row["proto"]))

    def probe(job):
        i, _, addr, port, proto = job
        if proto == "tcp":
            return probe_tcp(addr, port), None
        return probe_udp(addr, port, rows[i]["exposure"] == "public")

    # In parallel: silent probes each wait for their timeout.
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(probe, jobs))
    results = [{"ipv4": {}, "ipv6": {}} for _ in rows]
    stun = [{"ipv4": {}, "ipv6": {}} for _ in rows]
    for (i, fam, _, port, _), (state, facts) in zip(jobs, outcomes):
        results[i][fam][str(port)] = state
        if facts:
            stun[i][fam][str(port)] = facts
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"server": {"ipv4": v4, "ipv6": v6}, "rows": rows, "results": results, "stun": stun}, f, indent=1)


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
        # A public UDP port is STUN: it must answer a Binding request with the
        # client's own address (silence would look the same as a DROP).
        return {"open"}
    return {"open"} if binds_family(row, fam) else {"refused"}


def check(table, reach_file, role):
    trusted = role == "trusted"
    with open(reach_file, encoding="utf-8") as f:
        data = json.load(f)
    rows = read_table(table)
    problems = []
    lines = []
    stun = data.get("stun") or [{} for _ in rows]
    for row, res, facts in zip(rows, data["results"], stun):
        for fam in ("ipv4", "ipv6"):
            ok_states = expected(row, fam, trusted)
            for port, state in res[fam].items():
                what = f'{row["service"]} {port}/{row["proto"]} ({row["exposure"]}) over {fam}: {state}'
                f = facts.get(fam, {}).get(port)
                if f and "seconds" in f:
                    what += f' (STUN answer after {f["seconds"]} s, {f["retransmits"]} retransmission(s), mapped {f.get("mapped")})'
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
