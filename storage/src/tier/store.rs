//! [`ColdStore`]: where cold objects live — an `object_store` location and a root prefix.

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

use super::cache::ColdCache;
use crate::{Error, Result};

/// An object-store location holding the cold tier of every topic:
/// `<root>/<topic>/<partition>/<base offset>-<next offset>.parquet`.
#[derive(Clone)]
pub struct ColdStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    cache: Arc<ColdCache>,
}

impl fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdStore").field("url", &self.url).finish()
    }
}

impl ColdStore {
    /// A store from a URL: `file:///absolute/dir` (created if missing) or
    /// `s3://bucket[/prefix]`, configured by the standard `AWS_*` environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`, ...).
    ///
    /// Requests to S3 are retried briefly (3 times within 15 s, 2 s connect timeout): the
    /// tierer has its own backoff, and an unreachable store must surface as an error rather
    /// than hold a tiering pass for minutes.
    pub fn from_url(url: &str) -> Result<ColdStore> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidArgument(format!("cold store URL {url:?}: {e}")))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| {
                    Error::InvalidArgument(format!("cold store URL {url:?}: not an absolute path"))
                })?;
                Self::local(&dir)
            }
            "s3" | "s3a" => {
                let store = AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(15),
                    })
                    // `with_config`, not `with_client_options`: the latter would replace the
                    // client settings read from the environment (AWS_ALLOW_HTTP among them).
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        "2s",
                    )
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "60s")
                    .build()
                    .map_err(|e| Error::InvalidArgument(format!("cold store {url:?}: {e}")))?;
                let root = Path::from(parsed.path().trim_matches('/'));
                Ok(ColdStore {
                    store: Arc::new(store),
                    root,
                    url: url.to_string(),
                    cache: Arc::new(ColdCache::new(true)),
                })
            }
            other => Err(Error::InvalidArgument(format!(
                "cold store URL {url:?}: unsupported scheme {other:?} (use file:// or s3://)"
            ))),
        }
    }

    /// A store in a local directory, created if missing.
    pub fn local(dir: &FsPath) -> Result<ColdStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::InvalidArgument(format!("cold store {}: {e}", dir.display())))?;
        Ok(ColdStore {
            store: Arc::new(store),
            root: Path::default(),
            url: format!("file://{}", dir.display()),
            cache: Arc::new(ColdCache::new(false)),
        })
    }

    /// A store over any `object_store` implementation, rooted at `root`; `remote` turns on
    /// the cache of object byte ranges.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        url: impl Into<String>,
        remote: bool,
    ) -> ColdStore {
        ColdStore {
            store,
            root,
            url: url.into(),
            cache: Arc::new(ColdCache::new(remote)),
        }
    }

    pub(crate) fn cache(&self) -> &Arc<ColdCache> {
        &self.cache
    }

    /// The URL the store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `<root>/<topic>`.
    pub fn topic_prefix(&self, topic: &str) -> Path {
        self.root.clone().join(topic)
    }

    /// `<root>/<topic>/<partition>`.
    pub fn partition_prefix(&self, topic: &str, partition: u32) -> Path {
        self.topic_prefix(topic).join(partition.to_string())
    }

    /// Names of the topics that have objects in the store.
    pub async fn topics(&self) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(|e| Error::cold("listing topics", e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes every cold object of `topic` (objects named as Eddy names them; anything else
    /// under the prefix is not Eddy's and is left alone); returns how many were deleted.
    pub async fn delete_topic(&self, topic: &str) -> Result<usize> {
        let prefix = self.topic_prefix(topic);
        let objects: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_filter(|p| futures::future::ready(is_cold_object(p)))
            .try_collect()
            .await
            .map_err(|e| Error::cold(format!("listing {prefix}"), e))?;
        for object in &objects {
            self.delete(object).await?;
        }
        Ok(objects.len())
    }

    /// Deletes one object; a missing object is not an error (deletes are retried after
    /// crashes).
    pub(crate) async fn delete(&self, object: &Path) -> Result<()> {
        match self.store.delete(object).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::cold(format!("deleting {object}"), e)),
        }
    }
}

/// Whether `path` is named as Eddy names cold objects: `<20 digits>-<20 digits>.parquet`.
pub(crate) fn is_cold_object(path: &Path) -> bool {
    path.filename()
        .and_then(|f| f.strip_suffix(".parquet"))
        .and_then(|f| f.split_once('-'))
        .is_some_and(|(a, b)| {
            a.len() == 20
                && b.len() == 20
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}
