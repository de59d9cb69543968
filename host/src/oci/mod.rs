//! Apps as OCI artifacts in Spin's layout: `wharf registry push` and
//! `wharf up -f <reference>`.
//!
//! An image manifest whose layers are one Wasm layer per component (composed
//! with its dependencies, identical bytes pushed once) and, last, the locked
//! app JSON; its config is an OCI image config labelled with the locked app's
//! digest. That is what `spin registry push` writes, so the containerd shim
//! and `spin up` run what we push, and we run what Spin pushes.
//!
//! Pulled blobs are cached by digest and checked against it twice: as they
//! arrive (a blob that does not hash to its digest is refused), and when a
//! cached copy is used (a damaged copy is dropped and fetched again). Digests
//! are validated before they become file names.

pub mod locked;

use crate::manifest::Manifest;
use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// What wasm-pkg tools push; Spin accepts it for components, so do we.
const WASM_LAYER_WKG: &str = "application/wasm";
pub const DATA_LAYER: &str = "application/vnd.wasm.content.layer.v1+data";
pub const APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";
/// Files this small go inline in the locked app instead of as layers, as
/// Spin does (some registries refuse tiny blobs).
const INLINE_MAX: usize = 128;
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
/// Blobs fetched at once when pulling.
const PULL_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Speak plain HTTP to the registry (`--insecure`). Loopback registries
    /// get plain HTTP without it, as Docker and containerd treat them.
    pub insecure: bool,
    /// Root of the host's cache; blobs go under `registry/blobs/sha256/`.
    pub cache_dir: PathBuf,
    pub limits: PullLimits,
}

/// Caps on what a registry may send for one app. Declared sizes are checked
/// against them before anything is fetched, and each blob is cut off at its
/// declared size as it arrives, so a registry that lies about a size cannot
/// send more. Past a cap the pull fails naming it, and keeps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// Layers in the image manifest. Spin pushes one per distinct component
    /// and file, and switches to archive layers past 500.
    pub max_layers: usize,
    /// The locked app JSON, read into memory.
    pub max_locked_app_bytes: u64,
    /// The image config JSON, read into memory.
    pub max_config_bytes: u64,
    /// Each Wasm or data layer, written to the cache.
    pub max_blob_bytes: u64,
    /// All Wasm and data layers of the app together.
    pub max_app_bytes: u64,
}

impl Default for PullLimits {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self { max_layers: 512, max_locked_app_bytes: 16 * MIB, max_config_bytes: MIB, max_blob_bytes: 512 * MIB, max_app_bytes: 2048 * MIB }
    }
}

/// An app pulled from a registry, ready for [`crate::app::App::from_manifest`].
pub struct PulledApp {
    pub manifest: Manifest,
    /// The image manifest's digest: what exactly is running.
    pub digest: String,
    /// The components' files, written from the verified blobs into a
    /// directory of this process's own (hosts sharing a cache do not race).
    /// Components mount their part of it as it is, so keep it as long as the
    /// app runs.
    pub files: tempfile::TempDir,
}

/// Whether `-f` names a registry reference rather than a file: it has an
/// explicit registry (`host.name/...`, `host:port/...` or `localhost/...`).
/// An existing path always wins, as in Spin.
pub fn is_registry_reference(from: &str) -> bool {
    if Path::new(from).exists() {
        return false;
    }
    match from.split_once('/') {
        Some((registry, _)) if !registry.starts_with('.') => registry.contains('.') || registry.contains(':') || registry == "localhost",
        _ => false,
    }
}

fn parse_reference(reference: &str) -> Result<Reference> {
    reference.parse().map_err(|e| anyhow!("`{reference}` is not a valid OCI reference: {e}"))
}

struct Registry {
    client: Client,
    auth: RegistryAuth,
    plain_http: bool,
}

impl Registry {
    fn new(reference: &Reference, insecure: bool) -> Result<Self> {
        // reqwest is built without a default TLS crypto provider; ring is the
        // one the rest of the host already links.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_string();
        let plain_http = insecure || is_loopback(&registry);
        let protocol = if plain_http { ClientProtocol::HttpsExcept(vec![registry.clone()]) } else { ClientProtocol::Https };
        let client = Client::new(ClientConfig { protocol, ..Default::default() });
        Ok(Self { client, auth: credentials(&registry)?, plain_http })
    }

    /// An error from the registry client, said in terms of what to do about it.
    fn explain(&self, reference: &Reference, error: OciDistributionError) -> anyhow::Error {
        let registry = reference.resolve_registry();
        let not_found = match &error {
            OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown))
            }
            _ => false,
        };
        if not_found {
            return anyhow!("{reference}: not found in the registry (no such repository or tag)");
        }
        match &error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::ServerError { code: 401 | 403, .. } => {
                let how = match self.auth {
                    RegistryAuth::Anonymous => "no credentials for it were found in the docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                    _ => "the credentials from the docker config were refused",
                };
                anyhow!("{registry}: access denied: {how} ({error})")
            }
            OciDistributionError::DigestError(e) => anyhow!("{reference}: content does not match its digest, refused: {e}"),
            OciDistributionError::RequestError(e) if !self.plain_http => {
                anyhow!("{registry}: cannot reach the registry over HTTPS ({}); if it serves plain HTTP, pass --insecure (-k)", causes(e))
            }
            OciDistributionError::RequestError(e) => anyhow!("{registry}: cannot reach the registry ({})", causes(e)),
            _ => anyhow::Error::new(error).context(format!("{reference}")),
        }
    }
}

/// An error and its sources on one line (reqwest's own message leaves out
/// the cause, such as "connection refused").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Credentials for `registry` from the docker config (and its credential
/// helpers), as Docker, Spin and SpinKube's tooling read them.
fn credentials(registry: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(registry) {
        Ok(DockerCredential::UsernamePassword(user, password)) => Ok(RegistryAuth::Basic(user, password)),
        Ok(DockerCredential::IdentityToken(_)) => {
            tracing::warn!(registry, "the docker config holds an identity token for this registry; those are not supported, going anonymous");
            Ok(RegistryAuth::Anonymous)
        }
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(anyhow!("credentials for {registry} from the docker config: {e}")),
    }
}

/// Pushes the app at `manifest_path` to `reference`; returns the image
/// manifest's digest. Nothing time-dependent goes in, so pushing the same
/// content again gives the same digest.
/// `insecure` allows plain HTTP, as [`RegistryOptions::insecure`].
pub async fn push(manifest_path: &Path, reference: &str, insecure: bool) -> Result<String> {
    let reference = parse_reference(reference)?;
    let manifest = Manifest::load(manifest_path)?;
    let app_dir = Manifest::base_dir(manifest_path);

    let mut layers = Vec::new();
    let mut pushed = BTreeSet::new();
    let mut digests = BTreeMap::new();
    for id in manifest.component.keys() {
        let wasm = tokio::task::block_in_place(|| crate::compose::component_bytes(&manifest, &app_dir, id))
            .with_context(|| format!("{}: component.{id}", manifest_path.display()))?;
        let layer = ImageLayer::new(wasm, WASM_LAYER.into(), None);
        let digest = layer.sha256_digest();
        if pushed.insert(digest.clone()) {
            layers.push(layer);
        }
        digests.insert(id.clone(), digest);
    }
    let mut files = BTreeMap::new();
    for (id, spec) in manifest.component.iter().filter(|(_, spec)| !spec.files.is_empty()) {
        let dir = tempfile::tempdir()?;
        crate::files::materialize(spec, &app_dir, dir.path()).with_context(|| format!("{}: component.{id}", manifest_path.display()))?;
        let mut locked_files = Vec::new();
        for (path, full) in crate::files::walk(dir.path())? {
            let bytes = std::fs::read(&full)?;
            let digest = sha256_digest(&bytes);
            let inline = (bytes.len() <= INLINE_MAX).then(|| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes)
            });
            if inline.is_none() && pushed.insert(digest.clone()) {
                layers.push(ImageLayer::new(bytes, DATA_LAYER.into(), None));
            }
            locked_files.push(locked::LockedFile { content: locked::ContentRef { digest: Some(digest), inline, source: None }, path });
        }
        files.insert(id.clone(), locked_files);
    }
    let locked = locked::lock(&manifest, &digests, files).with_context(|| manifest_path.display().to_string())?;
    let app_layer = ImageLayer::new(serde_json::to_vec(&locked)?, APP_LAYER.into(), None);
    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": { "Labels": { LOCKED_APP_DIGEST_LABEL: app_layer.sha256_digest() } },
        "rootfs": { "type": "layers", "diff_ids": [] },
    });
    layers.push(app_layer);
    let config = Config::new(serde_json::to_vec(&config)?, IMAGE_CONFIG_MEDIA_TYPE.into(), None);

    let application = &manifest.application;
    let mut annotations = BTreeMap::from([("org.opencontainers.image.title".to_string(), application.name.clone())]);
    if let Some(version) = &application.version {
        annotations.insert("org.opencontainers.image.version".into(), version.clone());
    }
    if let Some(description) = &application.description {
        annotations.insert("org.opencontainers.image.description".into(), description.clone());
    }
    if !application.authors.is_empty() {
        annotations.insert("org.opencontainers.image.authors".into(), application.authors.join(", "));
    }
    let image_manifest = OciImageManifest::build(&layers, &config, Some(annotations));

    let registry = Registry::new(&reference, insecure)?;
    registry.client.push(&reference, &layers, config, &registry.auth, Some(image_manifest)).await.map_err(|e| registry.explain(&reference, e))?;
    registry.client.fetch_manifest_digest(&reference, &registry.auth).await.map_err(|e| registry.explain(&reference, e))
}

/// Pulls the app at `reference` into the blob cache and reads its locked app.
/// The locked app is checked whole before any layer is fetched, and a pull
/// that fails removes the blobs it added to the cache: a refused artifact
/// leaves nothing behind.
pub async fn pull(reference: &str, options: &RegistryOptions) -> Result<PulledApp> {
    let reference = parse_reference(reference)?;
    let registry = Registry::new(&reference, options.insecure)?;
    let limits = &options.limits;
    let explain = |e| registry.explain(&reference, e);
    let (image, digest) = registry.client.pull_image_manifest(&reference, &registry.auth).await.map_err(explain)?;
    if image.layers.len() > limits.max_layers {
        bail!("{reference}: the image has {} layers, more than --max-layers allows ({})", image.layers.len(), limits.max_layers);
    }

    let app_layer = image
        .layers
        .iter()
        .rfind(|l| l.media_type == APP_LAYER)
        .with_context(|| format!("{reference} is not a Spin app: it has no `{APP_LAYER}` layer"))?;
    let config = fetch_json(&registry, &reference, &image.config, Cap { bytes: limits.max_config_bytes, flag: "--max-config-bytes" }).await?;
    let config: serde_json::Value = serde_json::from_slice(&config).with_context(|| format!("{reference}: the image config is not JSON"))?;
    if let Some(label) = config.pointer("/config/Labels").and_then(|l| l.get(LOCKED_APP_DIGEST_LABEL)) {
        if label != app_layer.digest.as_str() {
            bail!("{reference}: the config's {LOCKED_APP_DIGEST_LABEL} ({label}) is not the digest of the locked app layer ({})", app_layer.digest);
        }
    }
    let locked_json = fetch_json(&registry, &reference, app_layer, Cap { bytes: limits.max_locked_app_bytes, flag: "--max-locked-app-bytes" }).await?;
    let locked: locked::LockedApp = serde_json::from_slice(&locked_json).with_context(|| format!("{reference}: the locked app is not valid"))?;

    let mut seen = BTreeSet::new();
    let content_layers: Vec<&OciDescriptor> = image
        .layers
        .iter()
        .filter(|l| [WASM_LAYER, WASM_LAYER_WKG, DATA_LAYER].contains(&l.media_type.as_str()) && seen.insert(l.digest.as_str()))
        .collect();
    let mut total: u64 = 0;
    for layer in &content_layers {
        let size = declared_size(layer).with_context(|| format!("{reference}: layer {}", layer.digest))?;
        if size > limits.max_blob_bytes {
            bail!("{reference}: layer {} is {size} bytes, more than --max-blob-bytes allows ({})", layer.digest, limits.max_blob_bytes);
        }
        total = total.saturating_add(size);
    }
    if total > limits.max_app_bytes {
        bail!("{reference}: the app's layers add up to {total} bytes, more than --max-app-bytes allows ({})", limits.max_app_bytes);
    }

    let cache = BlobCache::new(&options.cache_dir)?;
    let layer_path = |digest: &str| -> Result<PathBuf> {
        if !content_layers.iter().any(|l| l.digest == digest) {
            bail!("`{digest}` is not a layer of {reference}");
        }
        cache.path(digest)
    };
    let files = tempfile::Builder::new().prefix("wharf-pulled-files-").tempdir()?;
    let unlocked = locked.into_manifest(layer_path, files.path()).with_context(|| format!("{reference}: the locked app"))?;

    let added = AddedBlobs::default();
    futures::stream::iter(content_layers.iter().copied())
        .map(|layer| cache.fetch(&registry, &reference, layer, &added))
        .buffer_unordered(PULL_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    unlocked.write_files(files.path(), layer_path).with_context(|| format!("{reference}: the components' files"))?;
    added.keep();
    Ok(PulledApp { manifest: unlocked.manifest, digest, files })
}

/// A cap and the flag that sets it, for the error that names it.
struct Cap {
    bytes: u64,
    flag: &'static str,
}

/// A descriptor's size; a negative one is refused.
fn declared_size(descriptor: &OciDescriptor) -> Result<u64> {
    u64::try_from(descriptor.size).map_err(|_| anyhow!("declared size {} is not a size", descriptor.size))
}

/// A small blob read into memory (the config, the locked app), refused when
/// declared or sent larger than `cap`.
async fn fetch_json(registry: &Registry, reference: &Reference, descriptor: &OciDescriptor, cap: Cap) -> Result<Vec<u8>> {
    let size = declared_size(descriptor).with_context(|| format!("{reference}: blob {}", descriptor.digest))?;
    if size > cap.bytes {
        bail!("{reference}: blob {} ({}) is {size} bytes, more than {} allows ({})", descriptor.digest, descriptor.media_type, cap.flag, cap.bytes);
    }
    let mut out = Capped::new(Vec::new(), size);
    let result = registry.client.pull_blob(reference, descriptor, &mut out).await;
    out.check(reference, descriptor)?;
    result.map_err(|e| registry.explain(reference, e).context(format!("blob {}", descriptor.digest)))?;
    Ok(out.inner)
}

/// A writer that refuses bytes past `limit`: a blob is cut off at the size
/// its descriptor declares, however much the registry sends.
struct Capped<W> {
    inner: W,
    limit: u64,
    written: u64,
    exceeded: bool,
}

impl<W> Capped<W> {
    fn new(inner: W, limit: u64) -> Self {
        Self { inner, limit, written: 0, exceeded: false }
    }

    /// The error for a blob that ran past its declared size, if it did.
    fn check(&self, reference: &Reference, descriptor: &OciDescriptor) -> Result<()> {
        if self.exceeded {
            bail!("{reference}: blob {} is larger than the {} bytes its descriptor declares; refused", descriptor.digest, self.limit);
        }
        Ok(())
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Capped<W> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            self.exceeded = true;
            return std::task::Poll::Ready(Err(std::io::Error::other("blob larger than its declared size")));
        }
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            this.written += n as u64;
        }
        poll
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Blobs by digest under `<cache>/registry/blobs/sha256/<hex>`.
struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    fn new(cache_dir: &Path) -> Result<Self> {
        let dir = cache_dir.join("registry").join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the blob cache {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// Where the blob `digest` is kept; the digest is checked before it
    /// becomes a file name.
    fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join(sha256_hex(digest)?))
    }

    /// Makes sure an intact copy of `layer` is in the cache, fetching it
    /// unless one is there; a copy it adds is recorded in `added`.
    async fn fetch(&self, registry: &Registry, reference: &Reference, layer: &OciDescriptor, added: &AddedBlobs) -> Result<()> {
        let path = self.path(&layer.digest).with_context(|| format!("{reference}: layer digest"))?;
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if sha256_digest(&bytes) == layer.digest {
                return Ok(());
            }
            tracing::warn!(path = %path.display(), "cached blob does not match its digest; fetching it again");
        }
        // Creating and renaming are done inline, not with tokio::fs: a
        // tokio::fs call runs on a blocking thread and completes even when
        // this fetch is dropped because another layer failed, which left a
        // file behind that neither `Partial` nor `added` knew of (seen in CI:
        // a blob kept in the cache of a refused pull). Inline, a drop cannot
        // fall between a file appearing and its guard or record.
        let partial = Partial(path.with_extension(format!("partial-{}", std::process::id())));
        let file = std::fs::File::create(&partial.0).with_context(|| format!("cannot write {}", partial.0.display()))?;
        let mut out = Capped::new(tokio::fs::File::from_std(file), declared_size(layer)?);
        let result = registry.client.pull_blob(reference, layer, &mut out).await;
        out.check(reference, layer)?;
        result.map_err(|e| registry.explain(reference, e).context(format!("layer {}", layer.digest)))?;
        // tokio's File completes writes in the background until flushed.
        tokio::io::AsyncWriteExt::flush(&mut out).await.with_context(|| format!("cannot write {}", partial.0.display()))?;
        std::fs::rename(&partial.0, &path).with_context(|| format!("cannot store {}", path.display()))?;
        added.0.lock().expect("not poisoned").push(path);
        Ok(())
    }
}

/// Blobs one pull added to the cache: removed again unless the pull
/// succeeds, so a refused artifact leaves nothing in the cache.
#[derive(Default)]
struct AddedBlobs(std::sync::Mutex<Vec<PathBuf>>);

impl AddedBlobs {
    fn keep(self) {
        self.0.lock().expect("not poisoned").clear();
    }
}

impl Drop for AddedBlobs {
    fn drop(&mut self) {
        for path in self.0.get_mut().expect("not poisoned").drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A blob being fetched; removed unless it was renamed into place, also when
/// its fetch is dropped because another one failed.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `sha256:<hex>` of `bytes`, as OCI names content.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex of a `sha256:<64 hex>` digest; anything else is refused before it
/// can name a file.
fn sha256_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(hex),
        _ => bail!("`{digest}` is not a sha256 digest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for r in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["ghcr.io", "registry.example.com:5000", "10.0.0.1:5000", "localhost.example.com", "[fd00::1]:443"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn references_need_an_explicit_registry() {
        assert!(is_registry_reference("ghcr.io/shop/app:v1"));
        assert!(is_registry_reference("127.0.0.1:5000/shop:v1"));
        assert!(is_registry_reference("localhost/shop@sha256:0123"));
        assert!(!is_registry_reference("spin.toml"));
        assert!(!is_registry_reference("apps/shop"));
        assert!(!is_registry_reference("."));
        assert!(!is_registry_reference("../apps/shop"));
    }

    #[test]
    fn only_sha256_digests_name_blobs() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(sha256_hex(&good).unwrap(), "ab".repeat(32));
        for bad in ["sha256:../../etc/passwd", "sha512:00", "sha256:AB", &format!("sha256:{}", "AB".repeat(32))] {
            assert!(sha256_hex(bad).is_err(), "{bad}");
        }
    }
}
