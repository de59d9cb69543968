//! `wasi:sockets` policy: outbound TCP connections to what
//! `allowed_outbound_hosts` lists under the `tcp` scheme (or `*`), as Spin
//! grants them. Everything else a socket could do is refused:
//! - listening and accepting (a component serves through its trigger only);
//! - binding, except the implicit bind of a connect (the unspecified address,
//!   an ephemeral port), which wasmtime checks before every connect;
//! - UDP, and name lookup (`ip-name-lookup`), which Spin does not enable
//!   either: entries are matched against the address connected to, so a
//!   name in `allowed_outbound_hosts` grants no socket.
//!
//! A component whose entries cannot match `tcp` gets no TCP at all: creating
//! a socket fails with `access-denied`, as connecting would.

use crate::allowed_hosts::AllowedHosts;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Grants the instance built by `wasi` the sockets `allowed` lists.
pub fn grant(wasi: &mut WasiCtxBuilder, component: Arc<str>, allowed: Arc<AllowedHosts>) {
    if !allowed.mentions_scheme("tcp") {
        return;
    }
    wasi.allow_tcp(true);
    wasi.socket_addr_check(move |addr, usage| {
        let permitted = permits(&allowed, addr, usage);
        if !permitted {
            tracing::warn!(component = %component, %addr, ?usage, "socket use denied: not in allowed_outbound_hosts");
        }
        Box::pin(std::future::ready(permitted))
    });
}

/// Whether `addr` may be used for `usage`.
fn permits(allowed: &AllowedHosts, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpConnect => allowed.allows("tcp", &addr.ip().to_string(), addr.port()),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpListen
        | SocketAddrUse::TcpAccept
        | SocketAddrUse::UdpBind
        | SocketAddrUse::UdpSend
        | SocketAddrUse::UdpReceive => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connects_follow_the_entries_for_tcp() {
        let hosts = allowed(&["tcp://127.0.0.1:6001", "*://10.0.0.0/8:5432", "http://127.0.0.1:*", "tcp://[::1]:7"]);
        assert!(permits(&hosts, addr("127.0.0.1:6001"), SocketAddrUse::TcpConnect));
        assert!(permits(&hosts, addr("10.9.8.7:5432"), SocketAddrUse::TcpConnect));
        assert!(permits(&hosts, addr("[::1]:7"), SocketAddrUse::TcpConnect));
        assert!(!permits(&hosts, addr("127.0.0.1:6002"), SocketAddrUse::TcpConnect), "`http://` grants no socket");
        assert!(!permits(&hosts, addr("127.0.0.2:6001"), SocketAddrUse::TcpConnect));
        assert!(!permits(&hosts, addr("11.0.0.1:5432"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn only_the_implicit_bind_of_a_connect_passes_and_nothing_listens_or_speaks_udp() {
        let hosts = allowed(&["*://*:*"]);
        assert!(permits(&hosts, addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(permits(&hosts, addr("[::]:0"), SocketAddrUse::TcpBind));
        assert!(!permits(&hosts, addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!permits(&hosts, addr("127.0.0.1:0"), SocketAddrUse::TcpBind));
        for usage in [SocketAddrUse::TcpListen, SocketAddrUse::TcpAccept, SocketAddrUse::UdpBind, SocketAddrUse::UdpSend, SocketAddrUse::UdpReceive] {
            assert!(!permits(&hosts, addr("127.0.0.1:53"), usage), "{usage:?}");
        }
    }
}
