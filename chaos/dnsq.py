"""Raw DNS over UDP with the standard library only: build a query, parse the answer."""

import random
import socket
import struct

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def build_query(name, qtype, qid=None):
    qid = random.randrange(0, 65536) if qid is None else qid
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0)  # no RD: we ask an authority
    return qid, header + encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)


def _read_name(msg, off, depth=0):
    labels = []
    jumped_end = None
    while True:
        if off >= len(msg) or depth > 32:
            raise ValueError("bad name")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            if jumped_end is None:
                jumped_end = off + 2
            off = ptr
            depth += 1
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    name = ".".join(labels).lower() + "."
    return name, (jumped_end if jumped_end is not None else off)


def parse_response(msg):
    """{'id', 'rcode', 'aa', 'tc', 'answers': [(name, type, data)]} or raises ValueError."""
    if len(msg) < 12:
        raise ValueError("short message")
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        name, off = _read_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == 1 and rdlen == 4:
            data = socket.inet_ntoa(rdata)
        elif rtype == 28 and rdlen == 16:
            data = socket.inet_ntop(socket.AF_INET6, rdata)
        elif rtype in (2, 5):
            data, _ = _read_name(msg, off)
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rdata):
                ln = rdata[i]
                parts.append(rdata[i + 1:i + 1 + ln].decode("ascii", "replace"))
                i += 1 + ln
            data = "".join(parts)
        else:
            data = rdata.hex()
        answers.append((name, TYPE_NAMES.get(rtype, str(rtype)), data))
        off += rdlen
    return {
        "id": qid,
        "qr": bool(flags & 0x8000),
        "aa": bool(flags & 0x0400),
        "tc": bool(flags & 0x0200),
        "rcode": RCODES.get(flags & 0xF, str(flags & 0xF)),
        "answers": sorted(answers),
    }


def query(server, name, qtype, timeout=1.0, tries=1):
    """One query to (host, port); the parsed response, or None when no answer came."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        for _ in range(tries):
            qid, pkt = build_query(name, qtype)
            try:
                sock.sendto(pkt, server)
                while True:
                    data, _ = sock.recvfrom(65535)
                    try:
                        resp = parse_response(data)
                    except ValueError:
                        continue
                    if resp["id"] == qid and resp["qr"]:
                        return resp
            except OSError:  # timeout, unreachable
                continue
        return None
    finally:
        sock.close()
