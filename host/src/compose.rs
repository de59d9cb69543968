//! Component dependencies (`[component.x.dependencies]`), composed at load
//! time as Spin does: each import named by a dependency key is satisfied by an
//! export of the dependency component, and the result is one component whose
//! remaining imports the host links as usual.
//!
//! Keys are `package:name/interface[@version]` (one interface) or
//! `package:name[@version]` (every import from that package). Only the named
//! imports are wired; nothing else of the dependency is connected, so a
//! dependency's own HTTP handler, for example, can never stand in for an
//! import by accident.

use crate::manifest::{Dependency, Manifest};
use anyhow::{Context, Result, bail};
use std::path::Path;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// The component's bytes, composed with its dependencies if it has any (the
/// source as is without: a core module is componentized when compiled, so
/// the compile cache can skip that too).
pub fn component_bytes(manifest: &Manifest, app_dir: &Path, id: &str) -> Result<Vec<u8>> {
    let main = crate::app::read_source(manifest, app_dir, id)?;
    let spec = &manifest.component[id];
    if spec.dependencies.is_empty() {
        return Ok(main);
    }
    if !spec.dependencies_inherit_configuration {
        // Spin wraps non-inheriting dependencies in a deny-all adapter; this
        // host has no such adapter, so it refuses rather than grant silently.
        bail!(
            "dependencies: set `dependencies_inherit_configuration = true`; this host cannot yet isolate a dependency from the component's capabilities"
        );
    }
    let mut graph = CompositionGraph::new();
    let main = crate::componentize::componentize_if_module(&main)?.into_owned();
    let socket_package = Package::from_bytes(id, None, main, graph.types_mut())?;
    let socket = graph.register_package(socket_package)?;
    let socket_imports: Vec<String> = graph.types()[graph[socket].ty()].imports.keys().cloned().collect();
    let socket_exports: Vec<String> = graph.types()[graph[socket].ty()].exports.keys().cloned().collect();
    let socket_instance = graph.instantiate(socket);

    for (key, dependency) in &spec.dependencies {
        let (bytes, export) = match dependency {
            Dependency::Local { path, export } => {
                let path = app_dir.join(path);
                (std::fs::read(&path).with_context(|| format!("dependencies.\"{key}\": cannot read {}", path.display()))?, export.clone())
            }
            Dependency::AppComponent { component, export } => (
                crate::app::read_source(manifest, app_dir, component).with_context(|| format!("dependencies.\"{key}\": component `{component}`"))?,
                export.clone(),
            ),
            _ => bail!("dependencies.\"{key}\": unsupported dependency source"),
        };
        let matched: Vec<&String> = socket_imports.iter().filter(|import| key_matches(key, import)).collect();
        if matched.is_empty() {
            bail!("dependencies.\"{key}\": the component imports nothing that matches (its imports: {})", socket_imports.join(", "));
        }
        let bytes = crate::componentize::componentize_if_module(&bytes).with_context(|| format!("dependencies.\"{key}\""))?.into_owned();
        let plug_package = Package::from_bytes(&format!("dependency:{}", key.replace([':', '/', '@'], "-")), None, bytes, graph.types_mut())?;
        let plug = graph.register_package(plug_package)?;
        let plug_exports: Vec<String> = graph.types()[graph[plug].ty()].exports.keys().cloned().collect();
        let plug_instance = graph.instantiate(plug);
        for import in matched {
            let wanted = match &export {
                Some(export) => export.clone(),
                None => plug_exports
                    .iter()
                    .find(|e| same_interface(e, import))
                    .cloned()
                    .with_context(|| format!("dependencies.\"{key}\": the dependency exports no `{import}` (its exports: {})", plug_exports.join(", ")))?,
            };
            let node = graph.alias_instance_export(plug_instance, &wanted).with_context(|| format!("dependencies.\"{key}\": export `{wanted}`"))?;
            graph
                .set_instantiation_argument(socket_instance, import, node)
                .with_context(|| format!("dependencies.\"{key}\": cannot satisfy `{import}` with `{wanted}`"))?;
        }
    }
    for name in socket_exports {
        let node = graph.alias_instance_export(socket_instance, &name)?;
        graph.export(node, &name)?;
    }
    Ok(graph.encode(EncodeOptions::default())?)
}

/// `package:name/interface@version` without its version.
fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

fn same_interface(a: &str, b: &str) -> bool {
    unversioned(a) == unversioned(b)
}

/// Whether a dependency key names an import: an interface key names that
/// interface (any version unless the key gives one); a package key names
/// every interface of the package.
fn key_matches(key: &str, import: &str) -> bool {
    let (key_name, key_version) = match key.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (key, None),
    };
    let (import_name, import_version) = match import.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (import, None),
    };
    let name_ok = if key_name.contains('/') {
        key_name == import_name
    } else {
        import_name.split_once('/').is_some_and(|(package, _)| package == key_name)
    };
    name_ok && (key_version.is_none() || key_version == import_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_interfaces_and_packages() {
        assert!(key_matches("shop:inventory/inventory", "shop:inventory/inventory@0.1.0"));
        assert!(key_matches("shop:inventory/inventory@0.1.0", "shop:inventory/inventory@0.1.0"));
        assert!(!key_matches("shop:inventory/inventory@0.2.0", "shop:inventory/inventory@0.1.0"));
        assert!(key_matches("shop:inventory", "shop:inventory/inventory@0.1.0"));
        assert!(!key_matches("shop:inventory", "shop:inventory-extra/x@0.1.0"));
        assert!(!key_matches("shop:inventory/inventory", "shop:inventory/other@0.1.0"));
    }
}
