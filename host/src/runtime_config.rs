//! `runtime-config.toml`: where the app's stores live and where variables
//! come from, per deployment. Parsed strictly, like the manifest.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub state_dir: Option<String>,
    #[serde(default)]
    pub key_value_store: BTreeMap<String, KeyValueStoreConfig>,
    #[serde(default)]
    pub sqlite_database: BTreeMap<String, SqliteDatabaseConfig>,
    #[serde(default, alias = "config_provider")]
    pub variables_provider: Vec<VariablesProviderConfig>,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyValueStoreConfig {
    /// The embedded store; in memory without a path.
    Spin { path: Option<String> },
    Redis { url: String },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SqliteDatabaseConfig {
    /// A local database file; in memory without a path. (Spin's `libsql`,
    /// a remote database, is not supported.)
    Spin { path: Option<String> },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VariablesProviderConfig {
    /// Fixed values.
    Static { values: BTreeMap<String, String> },
    /// Environment variables `<prefix>_<NAME>` (prefix given without the trailing `_`).
    Env { prefix: Option<String>, dotenv_path: Option<String> },
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let mut config: RuntimeConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.base_dir = crate::manifest::Manifest::base_dir(path);
        for (label, store) in &config.key_value_store {
            if let KeyValueStoreConfig::Redis { url } = store {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    bail!("{}: key_value_store.{label}.url: expected a redis:// or rediss:// URL", path.display());
                }
            }
        }
        Ok(config)
    }

    pub fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stores_and_providers() {
        let c: RuntimeConfig = toml::from_str(
            r#"
            [key_value_store.default]
            type = "redis"
            url = "redis://127.0.0.1:6379"
            [key_value_store.cache]
            type = "spin"
            [[config_provider]]
            type = "static"
            values = { admin_token = "t" }
            "#,
        )
        .unwrap();
        assert!(matches!(c.key_value_store["default"], KeyValueStoreConfig::Redis { .. }));
        assert!(matches!(c.key_value_store["cache"], KeyValueStoreConfig::Spin { path: None }));
        assert_eq!(c.variables_provider.len(), 1);
    }

    #[test]
    fn parses_sqlite_databases_and_refuses_other_types() {
        let c: RuntimeConfig =
            toml::from_str("[sqlite_database.orders]\ntype = \"spin\"\npath = \"data/orders.db\"\n[sqlite_database.scratch]\ntype = \"spin\"").unwrap();
        assert!(matches!(&c.sqlite_database["orders"], SqliteDatabaseConfig::Spin { path: Some(p) } if p == "data/orders.db"));
        assert!(matches!(c.sqlite_database["scratch"], SqliteDatabaseConfig::Spin { path: None }));
        let err = toml::from_str::<RuntimeConfig>("[sqlite_database.x]\ntype = \"libsql\"\nurl = \"https://db\"\ntoken = \"t\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `libsql`, expected `spin`"), "{err}");
        assert!(toml::from_str::<RuntimeConfig>("[sqlite_database.x]\ntype = \"spin\"\npth = \"a\"").is_err());
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(toml::from_str::<RuntimeConfig>("[key_value_store.x]\ntype = \"dynamo\"").is_err());
        assert!(toml::from_str::<RuntimeConfig>("[key_value_store.x]\ntype = \"spin\"\npth = \"a\"").is_err());
        assert!(toml::from_str::<RuntimeConfig>("unknown = 1").is_err());
    }
}
