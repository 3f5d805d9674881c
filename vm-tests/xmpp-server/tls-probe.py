#!/usr/bin/python3
"""TLS of one endpoint, measured with the host's openssl from a client namespace.

  tls-probe.py [--versions-only] HOST PORT DOMAIN plain|xmpp ALLOWED_CIPHERS [CA_FILE]

Checks that TLS 1.0 and 1.1 are refused although the client offers them (its
security level is lowered so that only the server can say no), that TLS 1.2
and 1.3 are accepted, and that of every TLS 1.2 cipher this openssl knows the
server accepts only those in ALLOWED_CIPHERS (colon-separated, as configured in
the guest). With CA_FILE, the certificate must also verify for DOMAIN.
--versions-only skips the cipher-by-cipher part (~100 handshakes): for a
second address of an endpoint already probed in full, where the listening
socket differs but the TLS settings are the same.
Prints one line per finding and exits 1 when anything is wrong.
"""
import concurrent.futures
import subprocess
import sys

# OpenSSL's default TLS 1.3 suites, all AEAD; the CCM ones must not appear.
TLS13_ALLOWED = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}
TLS13_ALL = sorted(TLS13_ALLOWED | {"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"})


def endpoint(host, port):
    """HOST:PORT, an IPv6 address in brackets (as openssl and the report read it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def s_client(host, port, domain, mode, extra):
    cmd = ["openssl", "s_client", "-connect", endpoint(host, port), "-servername", domain]
    if mode == "xmpp":
        cmd += ["-starttls", "xmpp", "-xmpphost", domain]
    try:
        p = subprocess.run(cmd + extra, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    return p.returncode == 0 and "Cipher is (NONE)" not in p.stdout, p.stdout + p.stderr


def negotiated(output):
    for line in output.splitlines():
        if ", Cipher is " in line:
            return line.split(", Cipher is ")[1].strip()
    return "?"


def tls12_ciphers():
    out = subprocess.run(["openssl", "ciphers", "-tls1_2", "-s", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
                         capture_output=True, text=True, check=True).stdout
    return [c for c in out.strip().split(":") if c and not c.startswith("TLS_")]


def cipher_findings(where, res, allowed):
    problems = []
    got12 = sorted(k[4:] for k, (ok, _) in res.items() if k.startswith("1.2 ") and ok)
    got13 = sorted(k[4:] for k, (ok, _) in res.items() if k.startswith("1.3 ") and ok)
    print(f"{where} TLS 1.2 ciphers accepted: {' '.join(got12) or 'none'}")
    print(f"{where} TLS 1.3 suites accepted: {' '.join(got13) or 'none'}")
    extra12 = [c for c in got12 if c not in allowed]
    if extra12 or not got12:
        problems.append(f"{where} TLS 1.2 ciphers {got12}, allowed only {sorted(allowed)}")
    extra13 = [c for c in got13 if c not in TLS13_ALLOWED]
    if extra13 or not got13:
        problems.append(f"{where} TLS 1.3 suites {got13}, allowed only {sorted(TLS13_ALLOWED)}")
    return problems


def main(argv):
    versions_only = argv[1:2] == ["--versions-only"]
    if versions_only:
        argv = argv[:1] + argv[2:]
    if len(argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, port, domain, mode, allowed = argv[1], argv[2], argv[3], argv[4], set(argv[5].split(":"))
    ca = argv[6] if len(argv) == 7 else None
    where = f"{endpoint(host, port)}{' STARTTLS' if mode == 'xmpp' else ''}"
    problems = []
    probe = lambda extra: s_client(host, port, domain, mode, extra)

    jobs = {
        "TLSv1": ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        "TLSv1.1": ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        "TLSv1.2": ["-tls1_2"],
        "TLSv1.3": ["-tls1_3"],
    }
    for c in [] if versions_only else tls12_ciphers():
        jobs["1.2 " + c] = ["-tls1_2", "-cipher", c + ":@SECLEVEL=0"]
    for c in [] if versions_only else TLS13_ALL:
        jobs["1.3 " + c] = ["-tls1_3", "-ciphersuites", c]
    if ca:
        jobs["verify"] = ["-verify_return_error", "-verify_hostname", domain, "-CAfile", ca]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        res = dict(zip(jobs, pool.map(probe, jobs.values())))

    for v in ("TLSv1", "TLSv1.1"):
        ok, out = res[v]
        print(f"{where} {v}: {'ACCEPTED' if ok else 'refused'}")
        if ok:
            problems.append(f"{where} accepts {v} ({negotiated(out)})")
    for v in ("TLSv1.2", "TLSv1.3"):
        ok, out = res[v]
        print(f"{where} {v}: {'accepted, ' + negotiated(out) if ok else 'REFUSED'}")
        if not ok:
            problems.append(f"{where} refuses {v}:\n{out[-1500:]}")

    if not versions_only:
        problems += cipher_findings(where, res, allowed)

    if ca:
        ok, out = res["verify"]
        print(f"{where} certificate for {domain} verifies against {ca}: {'yes' if ok else 'NO'}")
        if not ok:
            problems.append(f"{where} certificate does not verify for {domain}:\n{out[-1500:]}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
