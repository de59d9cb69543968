//! `spin.toml` (manifest version 2): the schema, parsed strictly.
//!
//! Every table rejects fields it does not know, so a typo stops the start with
//! the file, the field and what is wrong instead of being silently ignored.
//! Semantic checks that serde cannot express (ids, routes, templates, references
//! between tables) live in [`Manifest::validate`].

use crate::capabilities::variables::Template;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    pub http: Option<ApplicationHttp>,
    pub redis: Option<ApplicationRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationHttp {
    pub base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRedis {
    pub address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    pub id: Option<String>,
    pub route: HttpRoute,
    /// The component that answers; exactly one of this and `static_response`.
    pub component: Option<String>,
    /// A fixed answer the host gives itself, with no component (Spin 3.x+).
    pub static_response: Option<StaticResponse>,
    pub executor: Option<toml::Table>,
}

/// What answers on an HTTP trigger's route.
#[derive(Debug, Clone, Copy)]
pub enum HttpAnswer<'a> {
    Component(&'a str),
    Static(&'a StaticResponse),
}

impl HttpTrigger {
    /// The one of `component` and `static_response` that is given; an error
    /// for both or neither (Spin's TOML has the two keys side by side).
    pub fn answer(&self) -> Result<HttpAnswer<'_>> {
        match (&self.component, &self.static_response) {
            (Some(component), None) => Ok(HttpAnswer::Component(component)),
            (None, Some(response)) => Ok(HttpAnswer::Static(response)),
            (None, None) => bail!("give either `component` or `static_response`"),
            (Some(_), Some(_)) => bail!("give either `component` or `static_response`, not both"),
        }
    }
}

/// `static_response = { status_code, headers, body }`: each part optional,
/// as in Spin (status 200, no headers, an empty body).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl StaticResponse {
    /// The status and headers, checked: a status outside 100–999, a header
    /// name or value HTTP does not allow, `transfer-encoding`, or a
    /// `content-length` other than the body's own would each make a broken
    /// answer, so the manifest is refused instead.
    pub fn head(&self) -> Result<(http::StatusCode, http::HeaderMap)> {
        let code = self.status_code.unwrap_or(200);
        let status = http::StatusCode::from_u16(code).map_err(|_| anyhow::anyhow!("status_code: {code} is not an HTTP status (100 to 999)"))?;
        let body_length = self.body.as_ref().map_or(0, String::len).to_string();
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let header = http::HeaderName::try_from(name.as_str()).with_context(|| format!("headers: `{name}` is not a header name"))?;
            let value = http::HeaderValue::try_from(value.as_str()).with_context(|| format!("headers.{name}: not a valid header value"))?;
            if header == http::header::TRANSFER_ENCODING {
                bail!("headers.{name}: the host frames the body itself");
            }
            if header == http::header::CONTENT_LENGTH && value != body_length.as_str() {
                bail!("headers.{name}: {value:?} is not the body's length ({body_length})");
            }
            headers.append(header, value);
        }
        Ok((status, headers))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HttpRoute {
    Route(String),
    Private(PrivateRoute),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    pub private: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTrigger {
    pub id: Option<String>,
    pub channel: String,
    pub component: String,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: ComponentSource,
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Files already laid out for the component in this directory (an app
    /// from a registry, written from its layers): mounted as they are instead
    /// of being copied from `files`. Never read from a manifest file.
    #[serde(skip)]
    pub prepared_files: Option<PathBuf>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    pub build: Option<ComponentBuild>,
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub dependencies_inherit_configuration: bool,
    #[serde(default)]
    pub dependencies: BTreeMap<String, Dependency>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ComponentSource {
    Local(String),
    Remote { url: String, digest: String },
    Registry { registry: Option<String>, package: String, version: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    Pattern(String),
    Placement { source: String, destination: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentBuild {
    pub command: BuildCommand,
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BuildCommand {
    One(String),
    Many(Vec<String>),
}

impl BuildCommand {
    pub fn commands(&self) -> Vec<&str> {
        match self {
            Self::One(c) => vec![c.as_str()],
            Self::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

/// A component dependency: which component satisfies an import.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Dependency {
    Version(String),
    Local { path: String, export: Option<String> },
    AppComponent { component: String, export: Option<String> },
    Http { url: String, digest: String, export: Option<String> },
    Package { version: String, registry: Option<String>, package: Option<String>, export: Option<String> },
}

impl Manifest {
    /// Reads and validates `path`. Errors name the file, the field and the problem.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }

    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version: expected 2, found {}",
                self.spin_manifest_version
            );
        }
        for (name, decl) in &self.variables {
            check_variable_name(name).with_context(|| format!("variables.{name}"))?;
            if decl.required == decl.default.is_some() {
                bail!("variables.{name}: a variable must be either `required = true` or have a `default`, not both or neither");
            }
        }
        for (id, component) in &self.component {
            check_component_id(id).with_context(|| format!("component.{id}"))?;
            self.validate_component(id, component)
                .with_context(|| format!("component.{id}"))?;
        }
        for (i, t) in self.trigger.http.iter().enumerate() {
            let at = format!("trigger.http[{i}]");
            match t.answer().with_context(|| at.clone())? {
                HttpAnswer::Component(component) => self.check_component_ref(component).with_context(|| format!("{at}.component"))?,
                HttpAnswer::Static(response) => {
                    response.head().with_context(|| format!("{at}.static_response"))?;
                    if let HttpRoute::Private(_) = &t.route {
                        bail!("{at}: a private route is reached only through its component, and a static_response has none");
                    }
                    if t.executor.is_some() {
                        bail!("{at}.executor: a static_response runs no component");
                    }
                }
            }
            if let HttpRoute::Route(route) = &t.route {
                crate::http_trigger::routing::RoutePattern::parse(route)
                    .with_context(|| format!("{at}.route"))?;
            } else if let HttpRoute::Private(PrivateRoute { private: false }) = &t.route {
                bail!("{at}.route: `private` must be true when given; use a route string for public routes");
            }
        }
        if let Some(base) = self.application.trigger.http.as_ref().and_then(|h| h.base.as_deref()) {
            if base != "/" {
                bail!("application.trigger.http.base: only \"/\" is supported (as in Spin); put the prefix in each route");
            }
        }
        if let Some(redis) = &self.application.trigger.redis {
            self.check_template(&redis.address)
                .context("application.trigger.redis.address")?;
        }
        for (i, t) in self.trigger.redis.iter().enumerate() {
            let at = format!("trigger.redis[{i}]");
            self.check_component_ref(&t.component).with_context(|| format!("{at}.component"))?;
            if t.channel.is_empty() {
                bail!("{at}.channel: must not be empty");
            }
            self.check_template(&t.channel).with_context(|| format!("{at}.channel"))?;
            match &t.address {
                Some(address) => self.check_template(address).with_context(|| format!("{at}.address"))?,
                None if self.application.trigger.redis.is_none() => bail!(
                    "{at}.address: no address here and no [application.trigger.redis] address"
                ),
                None => {}
            }
        }
        Ok(())
    }

    fn validate_component(&self, id: &str, c: &Component) -> Result<()> {
        if !matches!(c.source, ComponentSource::Local(_)) {
            bail!("source: only local file sources are supported by this host");
        }
        // Build commands run in their workdir, which must be inside the app.
        if let Some(workdir) = c.build.as_ref().and_then(|b| b.workdir.as_deref()) {
            crate::confined::relative(workdir).context("build.workdir")?;
        }
        for (name, value) in &c.variables {
            check_variable_name(name).with_context(|| format!("variables.{name}"))?;
            self.check_template(value).with_context(|| format!("variables.{name}"))?;
        }
        for (i, host) in c.allowed_outbound_hosts.iter().enumerate() {
            self.check_template(host)
                .with_context(|| format!("allowed_outbound_hosts[{i}]"))?;
        }
        for (import, dep) in &c.dependencies {
            match dep {
                Dependency::Local { .. } => {}
                Dependency::AppComponent { component, .. } => {
                    if component == id {
                        bail!("dependencies.\"{import}\": a component cannot depend on itself");
                    }
                    self.check_component_ref(component)
                        .with_context(|| format!("dependencies.\"{import}\".component"))?;
                    // As in Spin: a component used as a dependency by id is
                    // only a source of code; it may not hold grants of its own.
                    let dep = &self.component[component];
                    let granted = [
                        ("allowed_outbound_hosts", dep.allowed_outbound_hosts.is_empty()),
                        ("key_value_stores", dep.key_value_stores.is_empty()),
                        ("sqlite_databases", dep.sqlite_databases.is_empty()),
                        ("ai_models", dep.ai_models.is_empty()),
                        ("variables", dep.variables.is_empty()),
                        ("files", dep.files.is_empty()),
                        ("dependencies", dep.dependencies.is_empty()),
                    ];
                    if let Some((field, _)) = granted.iter().find(|(_, empty)| !empty) {
                        bail!("dependencies.\"{import}\": component `{component}` sets `{field}`, so it cannot be used as a dependency; use `path` to its source instead");
                    }
                }
                _ => bail!(
                    "dependencies.\"{import}\": only `path` and `component` dependencies are supported by this host"
                ),
            }
        }
        Ok(())
    }

    fn check_component_ref(&self, id: &str) -> Result<()> {
        if !self.component.contains_key(id) {
            bail!("no component named `{id}` in [component]");
        }
        Ok(())
    }

    /// A template must parse and may only name declared application variables.
    fn check_template(&self, text: &str) -> Result<()> {
        let template = Template::parse(text)?;
        for name in template.variable_names() {
            if !self.variables.contains_key(name) {
                bail!("template `{text}` refers to undeclared variable `{name}`");
            }
        }
        Ok(())
    }

    /// The directory that relative paths in the manifest are relative to.
    pub fn base_dir(path: &Path) -> PathBuf {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Component ids, as Spin has them: words of letters and digits joined by `-`,
/// each word all lowercase or all uppercase, the first starting with a letter.
pub(crate) fn check_component_id(id: &str) -> Result<()> {
    let ok = id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.split('-').all(|word| {
            !word.is_empty()
                && word.chars().all(|c| c.is_ascii_alphanumeric())
                && (word.chars().all(|c| !c.is_ascii_uppercase()) || word.chars().all(|c| !c.is_ascii_lowercase()))
        });
    if !ok {
        bail!("invalid component id `{id}`: use words of letters and digits joined by `-`");
    }
    Ok(())
}

/// Variable names: lowercase letters, digits and `_`, starting with a letter.
pub fn check_variable_name(name: &str) -> Result<()> {
    match variable_name_error(name) {
        Some(why) => bail!("invalid variable name {why}"),
        None => Ok(()),
    }
}

/// Why `name` is no variable name, in Spin's words (guests read them in
/// `invalid-name`): lower-case letters, digits and single underscores,
/// starting with a letter and ending with a letter or digit.
pub fn variable_name_error(name: &str) -> Option<String> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        format!("invalid character {bad:?}. Variable names may contain only lower-case letters, numbers, and underscores.")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lowercase ASCII letter".to_string()
    } else if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        "must end with a lowercase ASCII letter or digit".to_string()
    } else if name.contains("__") {
        "must not contain multiple consecutive underscores".to_string()
    } else {
        return None;
    };
    Some(format!("{name:?}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text)
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[variables]
greeting = { default = "hi" }
[[trigger.http]]
route = "/hello/..."
component = "hello"
[component.hello]
source = "hello.wasm"
[component.hello.variables]
message = "{{ greeting }}!"
"#;

    #[test]
    fn minimal_manifest_parses() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.application.name, "app");
        assert_eq!(m.trigger.http.len(), 1);
        assert_eq!(m.component["hello"].variables["message"], "{{ greeting }}!");
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse(&MINIMAL.replace("source = \"hello.wasm\"", "source = \"hello.wasm\"\nkey_value_store = [\"default\"]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `key_value_store`"), "{err}");
    }

    #[test]
    fn undeclared_variable_in_template_is_refused() {
        let err = parse(&MINIMAL.replace("{{ greeting }}", "{{ nope }}")).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("component.hello") && err.contains("undeclared variable `nope`"), "{err}");
    }

    #[test]
    fn missing_component_reference_is_refused() {
        let err = parse(&MINIMAL.replace("component = \"hello\"", "component = \"nope\"")).unwrap_err();
        assert!(format!("{err:#}").contains("trigger.http[0].component: no component named `nope`"));
    }

    #[test]
    fn a_component_dependency_must_hold_no_grants() {
        let with_dep = format!(
            "{MINIMAL}[component.lib]\nsource = \"lib.wasm\"\n[component.hello.dependencies]\n\"a:b/c\" = {{ component = \"lib\" }}\n"
        );
        assert!(parse(&with_dep).is_ok());
        let granted = with_dep.replace("source = \"lib.wasm\"", "source = \"lib.wasm\"\nkey_value_stores = [\"default\"]");
        let err = format!("{:#}", parse(&granted).unwrap_err());
        assert!(err.contains("component `lib` sets `key_value_stores`"), "{err}");
    }

    #[test]
    fn a_route_has_a_component_or_a_static_response() {
        let with_static = format!("{MINIMAL}[[trigger.http]]\nroute = \"/gone\"\nstatic_response = {{ status_code = 410 }}\n");
        let m = parse(&with_static).unwrap();
        assert_eq!(m.trigger.http[1].static_response.as_ref().unwrap().head().unwrap().0, http::StatusCode::GONE);
        let both = with_static.replace("route = \"/gone\"", "route = \"/gone\"\ncomponent = \"hello\"");
        assert!(format!("{:#}", parse(&both).unwrap_err()).contains("trigger.http[1]: give either `component` or `static_response`, not both"));
        let neither = with_static.replace("static_response = { status_code = 410 }", "");
        assert!(format!("{:#}", parse(&neither).unwrap_err()).contains("trigger.http[1]: give either `component` or `static_response`"));
        let private = with_static.replace("route = \"/gone\"", "route = { private = true }");
        assert!(format!("{:#}", parse(&private).unwrap_err()).contains("a private route is reached only through its component"));
    }

    #[test]
    fn bad_route_is_refused() {
        let err = parse(&MINIMAL.replace("/hello/...", "hello")).unwrap_err();
        assert!(format!("{err:#}").contains("trigger.http[0].route"), "{err:#}");
    }

    #[test]
    fn required_variable_with_default_is_refused() {
        let err = parse(&MINIMAL.replace("{ default = \"hi\" }", "{ default = \"hi\", required = true }")).unwrap_err();
        assert!(format!("{err:#}").contains("variables.greeting"));
        let err = parse(&MINIMAL.replace("{ default = \"hi\" }", "{ secret = true }")).unwrap_err();
        assert!(format!("{err:#}").contains("variables.greeting"));
    }

    #[test]
    fn a_build_workdir_must_stay_in_the_app_directory() {
        let with_workdir = |workdir: &str| {
            parse(&MINIMAL.replace("source = \"hello.wasm\"", &format!("source = \"hello.wasm\"\n[component.hello.build]\ncommand = \"make\"\nworkdir = {workdir:?}")))
        };
        assert!(with_workdir("hello/src").is_ok());
        for bad in ["/tmp", "../elsewhere", "a/../../b"] {
            let err = format!("{:#}", with_workdir(bad).unwrap_err());
            assert!(err.contains("component.hello") && err.contains("build.workdir"), "{bad}: {err}");
        }
    }

    #[test]
    fn component_ids_and_variable_names() {
        assert!(check_component_id("order-events").is_ok());
        assert!(check_component_id("Order").is_err());
        assert!(check_component_id("API-v2").is_ok());
        assert!(check_component_id("1-2-3").is_err());
        assert!(check_component_id("order_events").is_err());
        assert!(check_component_id("order--x").is_err());
        assert!(check_variable_name("redis_url").is_ok());
        assert!(check_variable_name("RedisUrl").is_err());
        assert!(check_variable_name("1x").is_err());
        assert!(check_variable_name("trailing_").is_err());
        assert!(check_variable_name("two__underscores").is_err());
        assert_eq!(
            variable_name_error("Not-A-Name").as_deref(),
            Some("\"Not-A-Name\": invalid character 'N'. Variable names may contain only lower-case letters, numbers, and underscores.")
        );
    }
}
