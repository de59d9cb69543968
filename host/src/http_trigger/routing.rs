//! Spin's HTTP routing: exact routes, `:name` segments and trailing `/...`
//! wildcards. The most specific route wins: comparing segment by segment, a
//! literal beats a parameter, which beats the rest of a wildcard. Two routes
//! that match exactly the same paths are refused when the app loads.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One parsed route pattern, e.g. `/orders/:id/status` or `/orders/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    segments: Vec<Segment>,
    wildcard: bool,
}

impl RoutePattern {
    pub fn parse(route: &str) -> Result<Self> {
        if !route.starts_with('/') {
            bail!("route `{route}` must start with `/`");
        }
        let trimmed = route.trim_end_matches('/');
        let mut segments = Vec::new();
        let mut wildcard = false;
        let parts: Vec<&str> = if trimmed.is_empty() { vec![] } else { trimmed[1..].split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            if *part == "..." {
                if i + 1 != parts.len() {
                    bail!("route `{route}`: `...` may only end a route");
                }
                wildcard = true;
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    bail!("route `{route}`: invalid parameter name `{part}`");
                }
                segments.push(Segment::Param(name.to_string()));
            } else if part.is_empty() {
                bail!("route `{route}`: empty segment");
            } else if part.contains("...") {
                bail!("route `{route}`: `...` must be a whole segment");
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(Self { segments, wildcard })
    }

    /// True when both patterns match exactly the same set of paths.
    fn same_paths(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|pair| match pair {
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Param(_), Segment::Param(_)) => true,
                _ => false,
            })
    }

    /// Per-segment ranks used to pick the most specific match.
    fn specificity(&self) -> Vec<u8> {
        let mut ranks: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param(_) => 1,
            })
            .collect();
        ranks.push(if self.wildcard { 0 } else { 3 });
        ranks
    }

    fn matches(&self, path_segments: &[&str]) -> Option<Match> {
        if path_segments.len() < self.segments.len()
            || (!self.wildcard && path_segments.len() != self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (segment, actual) in self.segments.iter().zip(path_segments) {
            match segment {
                Segment::Literal(lit) if lit == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) => params.push(actual.to_string()),
            }
        }
        let rest = &path_segments[self.segments.len()..];
        let path_info = if rest.is_empty() { String::new() } else { format!("/{}", rest.join("/")) };
        Some(Match { params, path_info })
    }

    /// The `:name` segments' names, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The route without its trailing wildcard (`spin-component-route`).
    pub fn prefix(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(p) => {
                    out.push(':');
                    out.push_str(p)
                }
            }
        }
        out
    }
}

impl std::fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self.prefix();
        match (prefix.is_empty(), self.wildcard) {
            (true, true) => f.write_str("/..."),
            (true, false) => f.write_str("/"),
            (false, true) => write!(f, "{prefix}/..."),
            (false, false) => f.write_str(&prefix),
        }
    }
}

/// What a path matched: the `:name` values and the part after a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The values of the `:name` segments, in the order of
    /// [`RoutePattern::param_names`].
    pub params: Vec<String>,
    pub path_info: String,
}

/// A route table mapping patterns to targets (component handlers).
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    pub fn new() -> Self {
        Self { routes: Vec::new() }
    }

    /// Adds a route; a route matching the same paths as an existing one is refused.
    pub fn add(&mut self, pattern: RoutePattern, target: T) -> Result<()> {
        if let Some((existing, _)) = self.routes.iter().find(|(p, _)| p.same_paths(&pattern)) {
            bail!("duplicate route: `{pattern}` matches the same paths as `{existing}`");
        }
        self.routes.push((pattern, target));
        self.routes.sort_by(|a, b| b.0.specificity().cmp(&a.0.specificity()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The most specific route matching `path` (routes are kept sorted by specificity).
    pub fn route(&self, path: &str) -> Option<(&RoutePattern, &T, Match)> {
        let trimmed = path.trim_end_matches('/');
        let segments: Vec<&str> = if trimmed.is_empty() { vec![] } else { trimmed[1..].split('/').collect() };
        self.routes
            .iter()
            .find_map(|(pattern, target)| pattern.matches(&segments).map(|m| (pattern, target, m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        let mut r = Router::new();
        for route in routes {
            r.add(RoutePattern::parse(route).unwrap(), route.to_string()).unwrap();
        }
        r
    }

    fn target(r: &Router<String>, path: &str) -> Option<String> {
        r.route(path).map(|(_, t, _)| t.clone())
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&["/...", "/orders/...", "/orders/summary", "/orders/:id", "/orders/:id/status", "/"]);
        assert_eq!(target(&r, "/orders/summary").unwrap(), "/orders/summary");
        assert_eq!(target(&r, "/orders/42").unwrap(), "/orders/:id");
        assert_eq!(target(&r, "/orders/42/status").unwrap(), "/orders/:id/status");
        assert_eq!(target(&r, "/orders/42/other").unwrap(), "/orders/...");
        assert_eq!(target(&r, "/orders").unwrap(), "/orders/...");
        assert_eq!(target(&r, "/").unwrap(), "/");
        assert_eq!(target(&r, "/elsewhere/x").unwrap(), "/...");
    }

    #[test]
    fn exact_routes_do_not_match_longer_paths() {
        let r = router(&["/a/b"]);
        assert!(target(&r, "/a/b/c").is_none());
        assert!(target(&r, "/a").is_none());
        assert_eq!(target(&r, "/a/b/").unwrap(), "/a/b");
    }

    #[test]
    fn params_and_path_info() {
        let r = router(&["/shop/:kind/...", "/users/:id"]);
        let (pattern, _, m) = r.route("/shop/hats/red/big").unwrap();
        assert_eq!(m.params, ["hats"]);
        assert_eq!(pattern.param_names().collect::<Vec<_>>(), ["kind"]);
        assert_eq!(m.path_info, "/red/big");
        let (_, _, m) = r.route("/users/7").unwrap();
        assert_eq!(m.path_info, "");
    }

    #[test]
    fn duplicates_are_refused() {
        let mut r = router(&["/orders/:id"]);
        let err = r.add(RoutePattern::parse("/orders/:order").unwrap(), "x".into()).unwrap_err();
        assert!(err.to_string().contains("duplicate route"), "{err}");
        let mut r = router(&["/a/..."]);
        assert!(r.add(RoutePattern::parse("/a/...").unwrap(), "y".into()).is_err());
        assert!(r.add(RoutePattern::parse("/a").unwrap(), "z".into()).is_ok());
    }

    #[test]
    fn bad_patterns() {
        for bad in ["orders", "/a/.../b", "/a//b", "/:", "/a/x..."] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn display_and_prefix() {
        let p = RoutePattern::parse("/api/orders/...").unwrap();
        assert_eq!(p.to_string(), "/api/orders/...");
        assert_eq!(p.prefix(), "/api/orders");
        assert_eq!(RoutePattern::parse("/...").unwrap().to_string(), "/...");
        assert_eq!(RoutePattern::parse("/").unwrap().to_string(), "/");
    }
}
