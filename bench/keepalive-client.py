"""Sends N requests over one keep-alive connection, in turn, and fails on
any answer but the expected status. By default each is GET / expecting 200;
--method, --path, --body, --header and --status make any other request,
such as POST /orders with a JSON body and a bearer token. With
--spin-headers each request carries the seven headers wharf adds for Spin
(values of the same length), so `wasmtime serve` can be measured doing the
header work wharf's guest does.

    python3 bench/keepalive-client.py PORT N
    python3 bench/keepalive-client.py PORT N --method POST --path /orders \
        --header 'content-type: application/json' --body '{...}' --status 201
"""
import argparse
import http.client
import sys

parser = argparse.ArgumentParser(description="N requests over one keep-alive connection")
parser.add_argument("port", type=int)
parser.add_argument("count", type=int)
parser.add_argument("--method", default="GET")
parser.add_argument("--path", default="/")
parser.add_argument("--body", help="sent as is, with its Content-Length")
parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
parser.add_argument("--status", type=int, default=200, help="the only answer accepted")
parser.add_argument("--spin-headers", action="store_true", help="add the seven spin-* headers")
args = parser.parse_args()

headers = {}
for header in args.header:
    name, colon, value = header.partition(":")
    if not colon or not name.strip():
        parser.error(f"--header {header!r}: expected 'NAME: VALUE'")
    headers[name.strip()] = value.strip()
if args.spin_headers:
    headers.update({
        "spin-full-url": f"http://127.0.0.1:{args.port}{args.path}",
        "spin-path-info": args.path,
        "spin-matched-route": "/...",
        "spin-base-path": "/",
        "spin-raw-component-route": "/...",
        "spin-component-route": "",
        "spin-client-addr": "127.0.0.1:40000",
    })
body = None if args.body is None else args.body.encode()
conn = http.client.HTTPConnection("127.0.0.1", args.port)
for _ in range(args.count):
    conn.request(args.method, args.path, body=body, headers=headers)
    response = conn.getresponse()
    answer = response.read()
    if response.status != args.status:
        sys.exit(f"{args.method} {args.path}: answer {response.status} from port {args.port}: {answer[:300]!r}")
