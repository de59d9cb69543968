//! Application variables: `{{ name }}` templates and the providers that give
//! variables their values.
//!
//! Values are resolved once at start-up, so a required variable without a value
//! stops the start with a clear message instead of failing the first request
//! that needs it. Providers in order of precedence: `SPIN_VARIABLE_<NAME>`
//! environment variables (also set by `--env`-style overrides), the runtime
//! config's `[[variables_provider]]` entries, then the manifest default.

mod p2;
mod p3;

use crate::manifest::VariableDecl;
use anyhow::{Result, bail};
use std::collections::{BTreeMap, HashMap};

/// A string with `{{ variable }}` holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("unterminated `{{{{` in `{text}`");
            };
            let name = after[..end].trim();
            crate::manifest::check_variable_name(name)?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            bail!("`}}}}` without `{{{{` in `{text}`");
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self(parts))
    }

    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    pub fn render(&self, values: &Variables) -> Result<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(values.get(name)?),
            }
        }
        Ok(out)
    }
}

/// The resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: HashMap<String, String>,
}

/// Where a variable's value may come from, besides the environment and the default.
pub trait Provider: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// Values given in `runtime-config.toml` (`[[variables_provider]] type = "static"`).
pub struct StaticProvider(pub BTreeMap<String, String>);

impl Provider for StaticProvider {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// `SPIN_VARIABLE_<NAME>` from a set of environment entries (the process
/// environment, overlaid by `--env` flags).
pub struct EnvProvider {
    pub prefix: String,
    pub env: HashMap<String, String>,
}

impl Provider for EnvProvider {
    fn get(&self, name: &str) -> Option<String> {
        let key = format!("{}_{}", self.prefix, name.to_ascii_uppercase());
        self.env.get(&key).cloned()
    }
}

impl Variables {
    /// Resolves every declared variable. All missing required variables are
    /// reported at once.
    pub fn resolve(
        declared: &BTreeMap<String, VariableDecl>,
        providers: &[Box<dyn Provider>],
    ) -> Result<Self> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in declared {
            match providers.iter().find_map(|p| p.get(name)).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None if decl.required => missing.push(name.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            bail!(
                "required variable{} without a value: {} (set SPIN_VARIABLE_{} or a runtime-config variables provider)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                missing[0].to_ascii_uppercase()
            );
        }
        Ok(Self { values })
    }

    pub fn get(&self, name: &str) -> Result<&str> {
        match self.values.get(name) {
            Some(v) => Ok(v),
            None => bail!("variable `{name}` has no value (declare a default or provide one)"),
        }
    }

    /// Renders a template string from the manifest.
    pub fn render(&self, text: &str) -> Result<String> {
        Template::parse(text)?.render(self)
    }
}

/// Why a component cannot read one of its variables, in Spin's words.
pub enum Unreadable {
    InvalidName(String),
    Undefined(String),
}

/// A component's own variable (its `[component.x.variables]`, rendered at
/// load time), as every version of the guest interface reads it.
pub fn component_variable(component: &str, variables: &HashMap<String, String>, name: &str) -> std::result::Result<String, Unreadable> {
    if let Some(why) = crate::manifest::variable_name_error(name) {
        return Err(Unreadable::InvalidName(why));
    }
    variables.get(name).cloned().ok_or_else(|| Unreadable::Undefined(format!("no variable for {component:?}.{name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        VariableDecl { default: default.map(str::to_string), required, ..Default::default() }
    }

    #[test]
    fn templates_parse_and_render() {
        let t = Template::parse("redis://{{ host }}:{{port}}/0").unwrap();
        assert_eq!(t.variable_names().collect::<Vec<_>>(), ["host", "port"]);
        let vars = Variables {
            values: [("host", "db"), ("port", "6379")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(t.render(&vars).unwrap(), "redis://db:6379/0");
        assert!(Template::parse("{{ host").is_err());
        assert!(Template::parse("x }}").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
    }

    #[test]
    fn providers_then_default_and_required_missing() {
        let declared: BTreeMap<_, _> = [
            ("a".to_string(), decl(Some("default-a"), false)),
            ("b".to_string(), decl(Some("default-b"), false)),
            ("c".to_string(), decl(None, true)),
        ]
        .into();
        let env = EnvProvider {
            prefix: "SPIN_VARIABLE".into(),
            env: [("SPIN_VARIABLE_A".to_string(), "env-a".to_string()), ("SPIN_VARIABLE_C".to_string(), "env-c".to_string())].into(),
        };
        let stat = StaticProvider([("c".into(), "static-c".into())].into());
        // The app's order: runtime-config providers first, the environment after.
        let vars = Variables::resolve(&declared, &[Box::new(stat), Box::new(env)]).unwrap();
        assert_eq!(vars.get("a").unwrap(), "env-a");
        assert_eq!(vars.get("b").unwrap(), "default-b");
        assert_eq!(vars.get("c").unwrap(), "static-c");

        let err = Variables::resolve(&declared, &[]).unwrap_err().to_string();
        assert!(err.contains("required variable without a value: c"), "{err}");
    }
}
