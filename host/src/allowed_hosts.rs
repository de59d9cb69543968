//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Entries are `scheme://host[:port]` as in Spin: the scheme may be `*`; the
//! host may be `*`, `*.domain`, a name, an IP address or `self` (the app
//! itself); the port may be a number, `*` or a range `a..b` (end exclusive).
//! Without a port, the scheme's well-known port applies.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq)]
enum HostMatch {
    Any,
    Exact(String),
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
        self.0.iter().any(|p| {
            p.scheme.as_deref().is_none_or(|s| s == scheme)
                && match &p.host {
                    HostMatch::Any => true,
                    HostMatch::Exact(h) => *h == host,
                    HostMatch::Subdomain(d) => host.len() > d.len() + 1 && host.ends_with(&format!(".{d}")),
                    HostMatch::SelfApp => false,
                }
                && match p.port {
                    PortMatch::Any => true,
                    PortMatch::Range(lo, hi) => (lo..hi).contains(&port),
                }
        })
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
    if rest.contains('/') && !rest.ends_with('/') {
        bail!("`{entry}`: a path is not allowed");
    }
    // Credentials name no destination: `redis://:secret@redis:6379` (a
    // templated `{{ redis_url }}`, typically) allows `redis:6379`.
    let rest = rest.trim_end_matches('/');
    let rest = rest.rsplit_once('@').map_or(rest, |(_credentials, host)| host);
    if scheme != "*" && (scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic())) {
        bail!("`{entry}`: invalid scheme `{scheme}`");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let host = match host.as_str() {
        "" => bail!("`{entry}`: missing host"),
        "*" => HostMatch::Any,
        "self" | "self.alt" => HostMatch::SelfApp,
        h if h.starts_with("*.") && !h[2..].contains('*') => HostMatch::Subdomain(h[2..].to_string()),
        h if h.contains('*') => bail!("`{entry}`: `*` may only be the whole host or its first label"),
        h => HostMatch::Exact(h.to_string()),
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
    fn bad_entries() {
        for bad in ["example.com", "https://example.com/path", "ftp://host", "http://ex*ample.com", "http://h:port", "1x://h:1"] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad} should be refused");
        }
    }
}
