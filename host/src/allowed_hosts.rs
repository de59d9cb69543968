//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Entries are `scheme://host[:port]` as in Spin: the scheme may be `*`; the
//! host may be `*`, `*.domain`, a name, an IP address, a CIDR range of IP
//! addresses (`10.0.0.0/8`, `fd00::/8`; host bits are ignored, as Spin
//! truncates them) or `self` (the app itself); the port may be a number, `*`
//! or a range `a..b` (end exclusive). Without a port, the scheme's well-known
//! port applies.

use anyhow::{Result, bail};
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
enum HostMatch {
    Any,
    /// A host name, lower-cased. Never matches an IP address.
    Name(String),
    /// An IP address (a one-address range) or a CIDR range; matches IP
    /// addresses only, compared as addresses (`[0::1]` is `[::1]`).
    Ip(IpNet),
    /// `*.example.com`: any subdomain of `example.com`.
    Subdomain(String),
    SelfApp,
}

#[derive(Debug, Clone, PartialEq)]
enum PortMatch {
    Any,
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq)]
struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<HostPattern>);

pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "postgres" => 5432,
        "mysql" => 3306,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<Self> {
        entries.iter().map(|e| parse_entry(e)).collect::<Result<_>>().map(Self)
    }

    /// Whether `scheme://host:port` may be reached.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.0.iter().any(|p| {
            p.scheme.as_deref().is_none_or(|s| s == scheme)
                && match (&p.host, ip) {
                    (HostMatch::Any, _) => true,
                    (HostMatch::Ip(net), Some(ip)) => net.contains(&ip),
                    (HostMatch::Name(h), None) => *h == host,
                    (HostMatch::Subdomain(d), None) => host.len() > d.len() + 1 && host.ends_with(&format!(".{d}")),
                    (HostMatch::Ip(_) | HostMatch::Name(_) | HostMatch::Subdomain(_) | HostMatch::SelfApp, _) => false,
                }
                && match p.port {
                    PortMatch::Any => true,
                    PortMatch::Range(lo, hi) => (lo..hi).contains(&port),
                }
        })
    }

    /// Whether some entry could allow `scheme` (its own or `*`): whether the
    /// component needs that kind of network access at all.
    pub fn mentions_scheme(&self, scheme: &str) -> bool {
        self.0.iter().any(|p| p.scheme.as_deref().is_none_or(|s| s == scheme))
    }

    /// Whether the component may call its own app (`http://self`): an explicit
    /// `self` entry, or the allow-everything `*://*:*`, as in Spin.
    pub fn allows_self(&self) -> bool {
        self.0.iter().any(|p| {
            p.host == HostMatch::SelfApp || (p.host == HostMatch::Any && p.scheme.is_none() && p.port == PortMatch::Any)
        })
    }
}

fn parse_entry(entry: &str) -> Result<HostPattern> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        bail!("`{entry}`: expected scheme://host[:port]");
    };
    if scheme != "*" && (scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic())) {
        bail!("`{entry}`: invalid scheme `{scheme}`");
    }
    // Credentials name no destination: `redis://:secret@redis:6379` (a
    // Redis URL templated from a Secret, typically) allows `redis:6379`.
    let rest = rest.trim_end_matches('/');
    let rest = rest.rsplit_once('@').map_or(rest, |(_credentials, host)| host);
    let (host, port) = split_host_port(entry, rest)?;
    let host = host.to_ascii_lowercase();
    let host = if let Ok(range) = host.parse::<IpNet>() {
        HostMatch::Ip(range.trunc())
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        HostMatch::Ip(IpNet::from(ip))
    } else {
        match host.as_str() {
            "" => bail!("`{entry}`: missing host"),
            h if h.contains('/') => bail!("`{entry}`: a path is not allowed (an IP range is `address/prefix-length`)"),
            "*" => HostMatch::Any,
            "self" | "self.alt" => HostMatch::SelfApp,
            h if h.starts_with("*.") && !h[2..].contains('*') => HostMatch::Subdomain(h[2..].to_string()),
            h if h.contains('*') => bail!("`{entry}`: `*` may only be the whole host or its first label"),
            h => HostMatch::Name(h.to_string()),
        }
    };
    let port = match port {
        Some("*") => PortMatch::Any,
        Some(p) => match p.split_once("..") {
            Some((lo, hi)) => PortMatch::Range(parse_port(entry, lo)?, parse_port(entry, hi)?),
            None => {
                let n = parse_port(entry, p)?;
                PortMatch::Range(n, n.saturating_add(1))
            }
        },
        None if host == HostMatch::SelfApp => PortMatch::Any,
        None => match default_port(scheme) {
            Some(n) => PortMatch::Range(n, n + 1),
            None => bail!("`{entry}`: scheme `{scheme}` has no default port; give one"),
        },
    };
    Ok(HostPattern { scheme: (scheme != "*").then(|| scheme.to_string()), host, port })
}

/// `host[:port]`, `[ipv6][:port]`, or an IP range `address/length[:port]`:
/// an IPv6 range needs no brackets (its prefix length ends the address), but
/// a single IPv6 address does, or `::1:80` could be an address or a port.
fn split_host_port<'a>(entry: &str, rest: &'a str) -> Result<(&'a str, Option<&'a str>)> {
    if rest.parse::<IpNet>().is_ok() {
        return Ok((rest, None));
    }
    if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else { bail!("`{entry}`: unclosed `[`") };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            bail!("`{entry}`: `[{ip}]` is not an IPv6 address");
        }
        return match after {
            "" => Ok((ip, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((ip, Some(check_no_path(entry, port)?))),
                None => bail!("`{entry}`: expected `:port` after `]`"),
            },
        };
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(check_no_path(entry, port)?)),
        None => (rest, None),
    };
    if host.contains(':') && host.parse::<IpNet>().is_err() {
        bail!("`{entry}`: an IPv6 address goes in brackets, `[{host}]`");
    }
    Ok((host, port))
}

fn check_no_path<'a>(entry: &str, port: &'a str) -> Result<&'a str> {
    if port.contains('/') {
        bail!("`{entry}`: a path is not allowed");
    }
    Ok(port)
}

fn parse_port(entry: &str, text: &str) -> Result<u16> {
    text.parse().map_err(|_| anyhow::anyhow!("`{entry}`: invalid port `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_default_ports_and_wildcards() {
        let h = hosts(&["https://api.example.com", "http://localhost:3000", "redis://127.0.0.1", "*://*.internal.test:*"]);
        assert!(h.allows("https", "api.example.com", 443));
        assert!(!h.allows("http", "api.example.com", 80));
        assert!(!h.allows("https", "api.example.com", 8443));
        assert!(h.allows("http", "localhost", 3000));
        assert!(!h.allows("http", "localhost", 3001));
        assert!(h.allows("redis", "127.0.0.1", 6379));
        assert!(h.allows("http", "a.internal.test", 9));
        assert!(!h.allows("http", "internal.test", 9));
        assert!(!h.allows("http", "evilinternal.test", 9));
        assert!(!h.allows_self());
    }

    #[test]
    fn ranges_self_and_any() {
        let h = hosts(&["http://self", "http://127.0.0.1:8000..8002"]);
        assert!(h.allows_self());
        assert!(h.allows("http", "127.0.0.1", 8001));
        assert!(!h.allows("http", "127.0.0.1", 8002));
        assert!(hosts(&["*://*:*"]).allows("ftp", "x", 21));
        assert!(hosts(&["*://*:*"]).allows_self());
        assert!(!hosts(&["https://*:443"]).allows_self(), "a host wildcard alone does not grant self");
    }

    #[test]
    fn credentials_in_an_entry_do_not_change_what_it_allows() {
        let h = hosts(&["redis://:s3cret@redis.shop.svc:6380", "redis://user:p%40ss@127.0.0.1"]);
        assert!(h.allows("redis", "redis.shop.svc", 6380));
        assert!(h.allows("redis", "127.0.0.1", 6379));
        assert!(!h.allows("redis", "s3cret", 6380));
        assert!(!h.allows("redis", "redis.shop.svc", 6379));
    }

    #[test]
    fn ip_ranges_allow_the_addresses_they_contain_and_nothing_else() {
        let h = hosts(&["*://127.0.0.0/24:7000", "tcp://10.1.2.3/16:*", "http://[fd00::1]:80", "redis://fd00:abcd::/32", "https://192.168.0.0/16"]);
        assert!(h.allows("tcp", "127.0.0.1", 7000));
        assert!(h.allows("http", "127.0.0.255", 7000));
        assert!(!h.allows("tcp", "127.0.1.0", 7000));
        assert!(!h.allows("tcp", "127.0.0.1", 7001));
        // Host bits of `10.1.2.3/16` are dropped, as Spin truncates them.
        assert!(h.allows("tcp", "10.1.200.9", 1));
        assert!(!h.allows("http", "10.1.200.9", 1), "`tcp://` grants no other scheme");
        assert!(h.allows("http", "[fd00:0::1]", 80), "IPv6 compared as an address, not as text");
        assert!(!h.allows("http", "[fd00::2]", 80));
        assert!(h.allows("redis", "fd00:abcd:1::9", 6379), "an IPv6 range takes the scheme's default port");
        assert!(!h.allows("redis", "fd00:abce::", 6379));
        assert!(h.allows("https", "192.168.7.7", 443));
        // A range matches addresses, never names that look like them.
        assert!(!h.allows("tcp", "127.0.0.1.nip.io", 7000));
    }

    #[test]
    fn an_ip_entry_matches_addresses_and_a_name_entry_matches_names() {
        let h = hosts(&["http://127.0.0.1:80", "http://localhost:80"]);
        assert!(h.allows("http", "127.0.0.1", 80));
        assert!(h.allows("http", "localhost", 80));
        assert!(!h.allows("http", "127.0.0.2", 80));
        assert!(!hosts(&["http://localhost:80"]).allows("http", "127.0.0.1", 80), "no name resolution in the policy");
    }

    #[test]
    fn which_schemes_an_app_mentions() {
        assert!(hosts(&["*://127.0.0.1:1"]).mentions_scheme("tcp"));
        assert!(hosts(&["tcp://127.0.0.1:1"]).mentions_scheme("tcp"));
        assert!(!hosts(&["http://127.0.0.1:1", "redis://r"]).mentions_scheme("tcp"));
        assert!(!hosts(&[]).mentions_scheme("tcp"));
    }

    #[test]
    fn bad_entries() {
        for bad in [
            "example.com",
            "https://example.com/path",
            "http://example.com:80/path",
            "ftp://host",
            "http://ex*ample.com",
            "http://h:port",
            "1x://h:1",
            "tcp://127.0.0.0/33:1",
            "tcp://127.0.0.0/x:1",
            "tcp://[fd00::]/8:1",
            "tcp://::1:80",
            "tcp://[::1:80",
            "tcp://[example.com]:80",
            "tcp://[::1]80",
            "*://127.0.0.0/24",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad} should be refused");
        }
    }
}
