//! The insights answer cache (`moka`) and the per-tenant data versions that
//! keep it honest.
//!
//! A cached answer is keyed by tenant, the tenant's data version and the
//! normalized query. A tenant's version is the newest bus offset holding rows
//! of that tenant; the aggregation consumer raises it *before* applying those
//! rows. An insights request first waits until every row acknowledged before
//! it is applied, reads the version, and waits until the store has applied
//! through it; an answer cached under version `v` therefore holds every row
//! of the tenant up to `v`, and a request that needs newer rows asks for a
//! newer version. Entries of old versions stop being asked for and age out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::AnswerCacheConfig;

/// A rendered answer and its entity tag.
#[derive(Debug)]
pub struct CachedAnswer {
    pub body: axum::body::Bytes,
    /// Quoted strong ETag.
    pub etag: String,
}

impl CachedAnswer {
    /// An answer with the ETag of its bytes.
    pub fn new(body: Vec<u8>) -> CachedAnswer {
        let digest = Sha256::digest(&body);
        CachedAnswer {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body: body.into(),
        }
    }
}

/// Per-tenant data versions.
#[derive(Default)]
pub struct DataVersions {
    versions: Mutex<HashMap<String, u64>>,
}

impl DataVersions {
    /// The current version of `tenant`'s data.
    pub fn get(&self, tenant: &str) -> u64 {
        self.versions
            .lock()
            .map(|v| v.get(tenant).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Rows of `tenant` at bus offset `offset` are about to be applied.
    pub fn advance(&self, tenant: &str, offset: u64) {
        if let Ok(mut versions) = self.versions.lock() {
            let v = versions.entry(tenant.to_owned()).or_insert(0);
            *v = (*v).max(offset);
        }
    }
}

/// The cache of rendered insights answers: in memory, and in Redis when
/// `cache.url` is set so that every process shares what any computed.
pub struct AnswerCache {
    /// Which data the answers are of (bus and store), so deployments
    /// sharing one Redis never serve each other's answers.
    namespace: String,
    cache: Option<moka::sync::Cache<String, Arc<CachedAnswer>>>,
    shared: Option<redis::aio::ConnectionManager>,
    ttl: Duration,
    hits: AtomicU64,
    lookups: AtomicU64,
}

fn shared_key(namespace: &str, key: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(namespace.as_bytes());
    digest.update([0x1f]);
    digest.update(key.as_bytes());
    format!("adpipe:answer:{}", hex::encode(digest.finalize()))
}

impl AnswerCache {
    pub fn new(config: &AnswerCacheConfig) -> AnswerCache {
        AnswerCache {
            namespace: String::new(),
            cache: config.enabled.then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(config.max_entries)
                    .time_to_live(Duration::from_secs(config.ttl_seconds.max(1)))
                    .build()
            }),
            shared: None,
            ttl: Duration::from_secs(config.ttl_seconds.max(1)),
            hits: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    /// Also keep answers in Redis (`redis://` or `rediss://`), under
    /// `namespace` (what identifies the data: bus topic, store database).
    pub fn with_redis(
        mut self,
        connection: redis::aio::ConnectionManager,
        namespace: String,
    ) -> AnswerCache {
        if self.cache.is_some() {
            self.shared = Some(connection);
            self.namespace = namespace;
        }
        self
    }

    /// The key of a query: tenant, data version, normalized parameters.
    pub fn key(tenant: &str, version: &str, normalized: &str) -> String {
        format!("{tenant}\u{1f}{version}\u{1f}{normalized}")
    }

    /// A cached answer; also returns (hits, lookups) so far.
    pub async fn get(&self, key: &str) -> (Option<Arc<CachedAnswer>>, u64, u64) {
        let Some(cache) = &self.cache else {
            return (None, 0, 0);
        };
        let mut found = cache.get(key);
        if found.is_none() {
            if let Some(connection) = &self.shared {
                let mut connection = connection.clone();
                let stored: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
                    .arg(shared_key(&self.namespace, key))
                    .query_async(&mut connection)
                    .await;
                match stored {
                    Ok(Some(bytes)) => {
                        if let Some(at) = bytes.iter().position(|&b| b == b'\n') {
                            let answer = Arc::new(CachedAnswer {
                                etag: String::from_utf8_lossy(&bytes[..at]).into_owned(),
                                body: bytes[at + 1..].to_vec().into(),
                            });
                            cache.insert(key.to_owned(), answer.clone());
                            found = Some(answer);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("shared answer cache unavailable: {e}"),
                }
            }
        }
        let lookups = self.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        let hits = if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.hits.load(Ordering::Relaxed)
        };
        (found, hits, lookups)
    }

    /// Keep an answer.
    pub async fn insert(&self, key: String, answer: Arc<CachedAnswer>) {
        if let Some(connection) = &self.shared {
            let mut value = Vec::with_capacity(answer.etag.len() + 1 + answer.body.len());
            value.extend_from_slice(answer.etag.as_bytes());
            value.push(b'\n');
            value.extend_from_slice(&answer.body);
            let mut connection = connection.clone();
            let stored: Result<(), _> = redis::cmd("SET")
                .arg(shared_key(&self.namespace, &key))
                .arg(value)
                .arg("PX")
                .arg(self.ttl.as_millis() as u64)
                .query_async(&mut connection)
                .await;
            if let Err(e) = stored {
                tracing::warn!("shared answer cache unavailable: {e}");
            }
        }
        if let Some(cache) = &self.cache {
            cache.insert(key, answer);
        }
    }

    /// Whether answers are cached at all.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_separate_keys_and_etags_follow_bytes() {
        let versions = DataVersions::default();
        let before = AnswerCache::key("t", &versions.get("t").to_string(), "q");
        versions.advance("t", 7);
        versions.advance("t", 3);
        assert_eq!(versions.get("t"), 7);
        assert_ne!(
            before,
            AnswerCache::key("t", &versions.get("t").to_string(), "q")
        );
        assert_eq!(versions.get("u"), 0);
        let a = CachedAnswer::new(b"{\"rows\":[]}".to_vec());
        let b = CachedAnswer::new(b"{\"rows\":[1]}".to_vec());
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, CachedAnswer::new(b"{\"rows\":[]}".to_vec()).etag);
        assert!(a.etag.starts_with('"') && a.etag.len() == 34);
    }
}
