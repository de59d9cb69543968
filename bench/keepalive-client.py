"""Sends N GET / requests over one keep-alive connection, in turn, and fails
on any answer but 200. With SPIN_HEADERS=1 each request carries the seven
headers wharf adds for Spin (values of the same length), so `wasmtime serve`
can be measured doing the header work wharf's guest does.

    python3 bench/keepalive-client.py PORT N
"""
import http.client
import os
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
headers = {}
if os.environ.get("SPIN_HEADERS") == "1":
    headers = {
        "spin-full-url": f"http://127.0.0.1:{port}/",
        "spin-path-info": "/",
        "spin-matched-route": "/...",
        "spin-base-path": "/",
        "spin-raw-component-route": "/...",
        "spin-component-route": "",
        "spin-client-addr": "127.0.0.1:40000",
    }
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(count):
    conn.request("GET", "/", headers=headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"answer {response.status} from port {port}")
