//! Object stores: sources at `s3://`, `gs://`, `az://` (and `abfs://`, `adl://`) and
//! `http(s)://` URLs, read through DataFusion's listing and Parquet/CSV readers exactly as
//! local files are (the same globs, footers, row counts and progress).
//!
//! A store is built the first time a URL of its bucket is used, from the standard environment
//! of its cloud (`object_store`'s `from_env` builders: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, web identity and instance credentials; `GOOGLE_APPLICATION_CREDENTIALS`
//! / `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, …),
//! with transient failures (refused connections, timeouts, cut responses, 5xx) retried with
//! backoff (see [`retry`]).

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

/// How long one request is retried before the run fails with the store's error.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a source path is a URL (`scheme://…`) rather than a local path.
pub fn is_url(path: &str) -> bool {
    match path.split_once("://") {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Whether a source's `path` names an object in a store (see [`is_url`]).
pub fn is_remote(path: &std::path::Path) -> bool {
    is_url(&path.to_string_lossy())
}

/// DataFusion's registry of object stores, which also builds the store of a cloud URL it has
/// not seen (instead of failing with "no suitable object store found").
#[derive(Debug, Default)]
pub struct CloudStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for CloudStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let store = build(url)?;
        self.known.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

/// Ten retries of a failed request, waiting a random time between 0.1 s and 3× the last wait
/// (at most 5 s) before each: about 20 s in all, so an outage of a few seconds is ridden out
/// and a wrong endpoint fails in about as long. (object_store's default, 0.1 s to 2× the last
/// wait, spends its ten retries in about 2 s.)
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 3.0,
        },
        max_retries: 10,
        retry_timeout: RETRY_TIMEOUT,
    }
}

/// The store for `url`'s bucket (container, host), configured from the environment.
fn build(url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::http::HttpBuilder;
    let at = || format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let fail = |e: object_store::Error, env: &str| {
        DataFusionError::Execution(format!(
            "cannot open the object store at {}: {e} (its settings and credentials come from {env})",
            at()
        ))
    };
    let (scheme, _) = ObjectStoreScheme::parse(url).map_err(|e| {
        DataFusionError::Execution(format!(
            "{url}: not an object-store URL sketchpipe can read ({e}); it reads s3://, gs://, \
             az://, abfs:// and http(s):// URLs"
        ))
    })?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => Arc::new(
            AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry())
                .build()
                .map_err(|e| fail(e, "the AWS_* environment variables"))?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry())
                .build()
                .map_err(|e| fail(e, "the GOOGLE_* environment variables"))?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry())
                .build()
                .map_err(|e| fail(e, "the AZURE_* environment variables"))?,
        ),
        ObjectStoreScheme::Http => Arc::new(
            HttpBuilder::new()
                .with_url(format!("{}/", at()))
                .with_retry(retry())
                .build()
                .map_err(|e| fail(e, "the URL"))?,
        ),
        ObjectStoreScheme::Local | ObjectStoreScheme::Memory => {
            return Err(DataFusionError::Execution(format!(
                "{url}: no store is registered for this URL"
            )))
        }
        // `ObjectStoreScheme` is non-exhaustive: a scheme a later object_store adds.
        _ => {
            return Err(DataFusionError::Execution(format!(
                "{url}: sketchpipe does not read this kind of object store yet"
            )))
        }
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_local_paths() {
        for url in [
            "s3://b/x.parquet",
            "gs://b/p/",
            "az://c/*.csv",
            "https://h/x.csv",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in [
            "data/x.parquet",
            "/abs/x",
            "C:/x",
            "C://x",
            "a b://c",
            "://x",
        ] {
            assert!(!is_url(path), "{path}");
        }
    }

    #[test]
    fn a_bucket_store_is_built_once_and_reused() {
        let stores = CloudStores::default();
        // Credentials are not needed to build a client; they are used by requests.
        let a = stores
            .get_store(&Url::parse("s3://bucket-a/x/y.parquet").unwrap())
            .unwrap();
        let again = stores
            .get_store(&Url::parse("s3://bucket-a/other.parquet").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = stores
            .get_store(&Url::parse("s3://bucket-b/x.parquet").unwrap())
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        let err = stores
            .get_store(&Url::parse("ftp://host/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ftp://host/x") && err.contains("s3://"),
            "{err}"
        );
    }
}
