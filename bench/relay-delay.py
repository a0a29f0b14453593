#!/usr/bin/env python3
"""relay-delay.py: the delay a proxy adds per chunk, read from a packet capture of both of its legs.

    python3 bench/relay-delay.py CAPTURE.pcap --upstream-port MOCK_PORT --gateway-port GATEWAY_PORT [--json]

The capture (tcpdump -i lo -s 0 -w CAPTURE.pcap, loopback only) holds the mock's packets to the gateway and the
gateway's packets to the client. Each content chunk of `sluice mock-upstream --timestamp-chunks` carries a unique
stamp (t=<Unix ms with 3 decimals>;), so one chunk is found on both legs: on loopback a packet is captured once, when
its sender's send() hands it to the kernel, so

    gateway leg − upstream leg = time from the mock's send to the gateway's send of the same chunk

— the gateway's wake-up, relay and send, and nothing of the mock's or the client's own scheduling (which the
client-side figure of bench/hold-streams.c includes: its "direct" floor is that part). Also printed: the mock's own
lag (upstream leg − stamp: from writing the stamp to its send()). Stdlib only; reads classic pcap (Ethernet or
Linux cooked captures).
"""
import argparse
import collections
import json
import re
import struct
import sys

STAMP = re.compile(rb'"content":"t=(\d+\.\d+);')


def packets(path):
    with open(path, 'rb') as f:
        head = f.read(24)
        if len(head) < 24:
            sys.exit(f"relay-delay.py: {path} is not a pcap file (too short); capture with 'tcpdump -w'.")
        magic = struct.unpack('<I', head[:4])[0]
        if magic in (0xa1b2c3d4, 0xa1b23c4d):
            endian = '<'
        elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
            endian = '>'
        else:
            sys.exit(f"relay-delay.py: {path} is not a classic pcap file (pcapng?); capture with 'tcpdump -w' (not -w with --pcapng).")
        nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
        link = struct.unpack(endian + 'I', head[20:24])[0]
        l2 = {1: 14, 113: 16, 0: 4}.get(link)
        if l2 is None:
            sys.exit(f"relay-delay.py: link type {link} is not handled; capture on the loopback interface (-i lo).")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(endian + 'IIII', rec)
            data = f.read(incl)
            t_ms = sec * 1e3 + (frac / 1e6 if nano else frac / 1e3)
            ip = data[l2:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue  # IPv4 TCP only (the bench binds 127.0.0.1)
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl:]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack('>HH', tcp[:4])
            payload = tcp[(tcp[12] >> 4) * 4:]
            if payload:
                yield t_ms, sport, dport, payload


def pct(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))
    return round(sorted_values[i], 3)


def summary(values):
    v = sorted(values)
    return {'n': len(v), 'min': round(v[0], 3) if v else None, 'p50': pct(v, 50), 'p90': pct(v, 90), 'p99': pct(v, 99), 'p99.9': pct(v, 99.9),
            'max': round(v[-1], 3) if v else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('capture')
    ap.add_argument('--upstream-port', type=int, required=True, help="the paced mock's port")
    ap.add_argument('--gateway-port', type=int, required=True, help="the gateway's port")
    ap.add_argument('--json', action='store_true', help='one JSON object instead of text')
    a = ap.parse_args()

    # A stamp's text is unique but for two chunks written in the same microsecond: matched first in, first out.
    upstream = collections.defaultdict(collections.deque)
    gateway_at = []  # (time, stamp) on the gateway leg, matched after the whole capture is read
    mock_lag = []
    # A chunk split over two packets: keep each connection's last bytes to find stamps across the boundary.
    tails = {}
    for t_ms, sport, dport, payload in packets(a.capture):
        if sport == a.upstream_port:
            leg = 'u'
        elif sport == a.gateway_port:
            leg = 'g'
        else:
            continue
        key = (sport, dport)
        buf = tails.get(key, b'') + payload
        last_end = 0
        for m in STAMP.finditer(buf):
            stamp = m.group(1)
            if leg == 'u':
                upstream[stamp].append(t_ms)
                mock_lag.append(t_ms - float(stamp))
            else:
                gateway_at.append((t_ms, stamp))
            last_end = m.end()
        tails[key] = buf[max(last_end, len(buf) - 96):]

    added, unmatched = [], 0
    for t_ms, stamp in gateway_at:
        q = upstream.get(stamp)
        if q:
            added.append(t_ms - q.popleft())
        else:
            unmatched += 1  # its upstream packet fell before the capture started
    result = {'gateway_added_ms': summary(added), 'mock_lag_ms': summary(mock_lag),
              'unmatched_gateway_chunks': unmatched,
              'upstream_chunks_not_relayed_in_capture': sum(len(q) for q in upstream.values())}
    if a.json:
        print(json.dumps(result))
        return
    g, m = result['gateway_added_ms'], result['mock_lag_ms']
    if not g['n']:
        sys.exit("relay-delay.py: no chunk was found on both legs; check the ports and that the mock runs with --timestamp-chunks.")
    print(f"relay-delay: {g['n']} chunks seen on both legs; gateway send − mock send (ms): p50 {g['p50']}, p90 {g['p90']}, "
          f"p99 {g['p99']}, p99.9 {g['p99.9']}, max {g['max']}")
    print(f"relay-delay: the mock's own lag, stamp to its send (ms): p50 {m['p50']}, p90 {m['p90']}, p99 {m['p99']}, max {m['max']}"
          f" ({unmatched} gateway-leg chunks without an upstream packet in the capture, "
          f"{result['upstream_chunks_not_relayed_in_capture']} upstream chunks not yet relayed when it ended)")


if __name__ == '__main__':
    main()
