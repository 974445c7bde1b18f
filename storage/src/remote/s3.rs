//! [`ObjectStore`] on Amazon S3 and S3-compatible stores, with the AWS SDK.
//!
//! Credentials come from the SDK's standard chain (environment, shared profile, web
//! identity / IRSA, container and instance metadata), never from the archive URL, so no
//! secret can reach a log through it. A custom endpoint (`--s3-endpoint` or
//! `AWS_ENDPOINT_URL`) is addressed path-style, as MinIO, Garage and moto expect.

use super::store::{
    ListQuery, Listed, Listing, Metadata, Object, ObjectStore, StoreError, StoreErrorKind,
    StoreFuture,
};
use crate::error::error_chain;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing slash (may be empty).
    pub prefix: String,
}

impl std::str::FromStr for S3Url {
    type Err = String;

    fn from_str(url: &str) -> Result<S3Url, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url}: an S3 archive is named s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url}: no bucket name"));
        }
        if bucket.contains('@') || bucket.contains(':') {
            return Err(format!(
                "{url}: credentials do not go in the URL; binlogd takes them from the AWS \
                 chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, web identity or \
                 instance metadata)"
            ));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the store, beyond what the AWS chain says.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Region; else the chain's (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint (MinIO, Garage, ...); also taken from `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Server-side encryption to ask of the store.
    pub server_side: Option<ServerSideEncryption>,
}

/// What the store is asked to encrypt, and how.
///
/// SSE-KMS applies to every object binlogd writes (the store decrypts for anyone allowed
/// to use the KMS key, so readers need nothing). SSE-C applies to segments only: every
/// read of an SSE-C object must present the key, and keeping indexes, manifests and the
/// catalogue readable lets `list`, `search` and `timeline` run without it.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-C with this 256-bit customer key.
    CustomerKey([u8; 32]),
    /// SSE-KMS with this key id, or the bucket's default KMS key.
    Kms(Option<String>),
}

impl std::fmt::Debug for ServerSideEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the key itself.
            ServerSideEncryption::CustomerKey(key) => {
                write!(f, "CustomerKey(md5 {})", customer_key_md5(key))
            }
            ServerSideEncryption::Kms(id) => write!(f, "Kms({id:?})"),
        }
    }
}

impl ServerSideEncryption {
    /// How manifests record it: the mode and, for SSE-C, the key's MD5 (which S3 itself
    /// reports), for SSE-KMS the key id.
    pub fn record(&self) -> (String, Option<String>) {
        match self {
            ServerSideEncryption::CustomerKey(key) => {
                ("sse-c".to_owned(), Some(customer_key_md5(key)))
            }
            ServerSideEncryption::Kms(id) => ("aws:kms".to_owned(), id.clone()),
        }
    }
}

/// The base64 MD5 of an SSE-C key, as the `x-amz-server-side-encryption-customer-key-MD5`
/// header carries it.
pub fn customer_key_md5(key: &[u8; 32]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(key))
}

/// Whether `key` names a segment object (the only objects SSE-C applies to).
fn is_segment(key: &str) -> bool {
    let leaf = key.rsplit('/').next().unwrap_or_default();
    matches!(
        super::keys::parse_file_object(leaf),
        Some(super::keys::FileObject::Segment { .. })
    )
}

/// Whether this machine has CA certificates to verify an HTTPS endpoint with (the
/// system's bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR`). A database image that binlogd is
/// copied into for a restore may have none.
fn machine_has_ca_certificates() -> bool {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        tracing::warn!(
            errors = ?found.errors,
            "no CA certificates on this machine: an https:// S3 endpoint cannot be verified \
             (install ca-certificates, or name a bundle with SSL_CERT_FILE); http:// works"
        );
        false
    } else {
        true
    }
}

/// The SDK's HTTPS client, trusting no CA: its default insists on the system's (and
/// aborts a debug build without them), where an http:// endpoint needs none.
fn client_without_ca_certificates() -> impl aws_sdk_s3::config::HttpClient + use<> {
    use aws_smithy_http_client::tls;
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty())
        .build()
        .unwrap_or_default();
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https()
}

/// A bucket and prefix on S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    url: S3Url,
    honours_conditions: bool,
    server_side: Option<ServerSideEncryption>,
}

impl S3Store {
    /// Builds a client for `url`. Makes no request.
    pub async fn connect(url: S3Url, options: &S3Options) -> S3Store {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if !machine_has_ca_certificates() {
            loader = loader.http_client(client_without_ca_certificates());
        }
        let shared = loader.load().await;
        let custom_endpoint =
            options.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(custom_endpoint)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
        if shared.region().is_none() {
            config = config.region(aws_config::Region::new("us-east-1"));
        }
        S3Store {
            client: Client::from_conf(config.build()),
            url,
            // Until a probe shows otherwise, assume the store may ignore conditions: the
            // lease then looks before it writes, which is safe on every store.
            honours_conditions: false,
            server_side: options.server_side.clone(),
        }
    }

    /// Uses a client built elsewhere (a test's static credentials, a custom
    /// credentials provider).
    pub fn with_client(client: Client, url: S3Url) -> S3Store {
        S3Store {
            client,
            url,
            // Until a probe shows otherwise, assume the store may ignore conditions: the
            // lease then looks before it writes, which is safe on every store.
            honours_conditions: false,
            server_side: None,
        }
    }

    /// The SSE-C headers (algorithm, key, key MD5) a request for `key` carries: only
    /// segments, and only with a customer key.
    fn customer_key_headers_for(&self, key: &str) -> Option<(String, String, String)> {
        use base64::Engine;
        match &self.server_side {
            Some(ServerSideEncryption::CustomerKey(customer_key)) if is_segment(key) => Some((
                "AES256".to_owned(),
                base64::engine::general_purpose::STANDARD.encode(customer_key),
                customer_key_md5(customer_key),
            )),
            _ => None,
        }
    }

    /// Asks the store for server-side encryption (see [`ServerSideEncryption`]).
    pub fn with_server_side(mut self, server_side: Option<ServerSideEncryption>) -> S3Store {
        self.server_side = server_side;
        self
    }

    /// Creates `key` if absent, twice: a store that enforces the condition creates it
    /// once only.
    async fn create_twice(
        &self,
        key: &str,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let none = Metadata::new();
        let first = self
            .put_if_absent(key, Bytes::from_static(b"1"), &none)
            .await?;
        let second = self
            .put_if_absent(key, Bytes::from_static(b"2"), &none)
            .await?;
        Ok((first, second))
    }

    /// Checks that the bucket is there and the credentials work, and finds out whether
    /// the store enforces conditional writes (some S3-compatible stores ignore them).
    pub async fn probe(&mut self) -> Result<(), StoreError> {
        let key = ".binlogd-probe";
        let (mut first, mut second) = self.create_twice(key).await?;
        if first.is_none() {
            // Left over from an earlier probe: try once more on a clean slate.
            self.delete(key).await?;
            (first, second) = self.create_twice(key).await?;
        }
        self.honours_conditions = first.is_some() && second.is_none();
        if let Some(ServerSideEncryption::Kms(_)) = &self.server_side {
            // Some S3-compatible stores take the SSE-KMS headers and store the object in
            // the clear. Ask the store what it did with the probe object.
            let head = self
                .client
                .head_object()
                .bucket(&self.url.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| self.error("HEAD", key, e))?;
            if head.server_side_encryption()
                != Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            {
                let _ = self.delete(key).await;
                return Err(StoreError {
                    kind: StoreErrorKind::BadRequest,
                    operation: "PUT",
                    location: format!("{}/{key}", self.url),
                    message: format!(
                        "the store does not apply SSE-KMS: a test object written with it reports {}",
                        head.server_side_encryption()
                            .map_or("no server-side encryption".to_owned(), |e| e
                                .as_str()
                                .to_owned())
                    ),
                });
            }
        }
        self.delete(key).await
    }

    fn full_key(&self, key: &str) -> String {
        if self.url.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.url.prefix)
        }
    }

    fn error<E, R>(&self, operation: &'static str, key: &str, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        SdkError<E, R>: std::error::Error,
    {
        let location = format!("{}/{key}", self.url);
        let status = match &err {
            SdkError::ServiceError(e) => Some(format!("{:?}", e.raw())),
            _ => None,
        };
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        let kind = classify(&err, code.as_deref(), status.as_deref());
        let message = match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => error_chain(&err),
        };
        StoreError {
            kind,
            operation,
            location,
            message,
        }
    }
}

/// What a conditional PUT requires of the object there.
#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    /// No object (`If-None-Match: *`).
    Absent,
    /// This version (`If-Match`).
    Matches(&'a str),
}

impl S3Store {
    /// A PUT that happens only under `condition`: the new tag, or `None` when the
    /// condition did not hold.
    async fn conditional_put(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
        condition: Condition<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(body));
        for (name, value) in metadata {
            request = request.metadata(name, value);
        }
        let mut request = match condition {
            Condition::Absent => request.if_none_match("*"),
            Condition::Matches(etag) => request.if_match(etag),
        };
        if let Some(ServerSideEncryption::Kms(id)) = &self.server_side {
            request = request
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(id.clone());
        }
        match request.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) => match self.error("PUT", key, e) {
                e if e.kind == StoreErrorKind::PreconditionFailed => Ok(None),
                e => Err(e),
            },
        }
    }
}

/// Sorts an SDK failure into what binlogd can do about it.
fn classify<E, R>(err: &SdkError<E, R>, code: Option<&str>, raw: Option<&str>) -> StoreErrorKind {
    match code {
        Some("NoSuchBucket") => return StoreErrorKind::NoSuchBucket,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired",
        ) => return StoreErrorKind::AccessDenied,
        Some("PreconditionFailed" | "ConditionalRequestConflict") => {
            return StoreErrorKind::PreconditionFailed;
        }
        Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout") => {
            return StoreErrorKind::Transient;
        }
        _ => {}
    }
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StoreErrorKind::Transient
        }
        SdkError::ServiceError(_) => {
            let status = raw.and_then(status_of);
            match status {
                Some(412) => StoreErrorKind::PreconditionFailed,
                Some(401 | 403) => StoreErrorKind::AccessDenied,
                Some(s) if s >= 500 || s == 429 => StoreErrorKind::Transient,
                _ => StoreErrorKind::BadRequest,
            }
        }
        _ => StoreErrorKind::BadRequest,
    }
}

/// The largest object read: a segment of the largest `--segment-size`, with room for
/// compression's and encryption's overhead on bytes that do not compress.
const MAX_OBJECT_LENGTH: u64 = super::keys::MAX_SEGMENT_LENGTH as u64 + (64 << 20);

/// The HTTP status out of a raw response's debug text (`status: StatusCode(503)`).
fn status_of(raw: &str) -> Option<u16> {
    let at = raw.find("StatusCode(")? + "StatusCode(".len();
    raw[at..].split(')').next()?.parse().ok()
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.url.to_string()
    }

    fn put<'a>(&'a self, key: &'a str, body: Bytes, metadata: &'a Metadata) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut request = self
                .client
                .put_object()
                .bucket(&self.url.bucket)
                .key(self.full_key(key))
                .body(ByteStream::from(body));
            for (name, value) in metadata {
                request = request.metadata(name, value);
            }
            if let Some((algorithm, encoded, md5)) = self.customer_key_headers_for(key) {
                request = request
                    .sse_customer_algorithm(algorithm)
                    .sse_customer_key(encoded)
                    .sse_customer_key_md5(md5);
            }
            if let Some(ServerSideEncryption::Kms(id)) = &self.server_side {
                request = request
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(id.clone());
            }
            request
                .send()
                .await
                .map_err(|e| self.error("PUT", key, e))?;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        body: Bytes,
        metadata: &'a Metadata,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.conditional_put(key, body, metadata, Condition::Absent))
    }

    fn put_if_match<'a>(
        &'a self,
        key: &'a str,
        body: Bytes,
        metadata: &'a Metadata,
        etag: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.conditional_put(key, body, metadata, Condition::Matches(etag)))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Object>> {
        Box::pin(async move {
            let mut request = self
                .client
                .get_object()
                .bucket(&self.url.bucket)
                .key(self.full_key(key));
            let headers = self.customer_key_headers_for(key);
            let customer_key = headers.is_some();
            if let Some((algorithm, encoded, md5)) = headers {
                request = request
                    .sse_customer_algorithm(algorithm)
                    .sse_customer_key(encoded)
                    .sse_customer_key_md5(md5);
            }
            let out = match request.send().await {
                Ok(out) => out,
                Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
                Err(e) => {
                    let mut error = self.error("GET", key, e);
                    // A refused segment read is, more often than not, about SSE-C.
                    if is_segment(key)
                        && matches!(
                            error.kind,
                            StoreErrorKind::BadRequest | StoreErrorKind::AccessDenied
                        )
                    {
                        error.message.push_str(if customer_key {
                            " (is --sse-c-key-file the key this segment was written with?)"
                        } else {
                            " (if the archive was written with SSE-C, give --sse-c-key-file)"
                        });
                    }
                    return Err(error);
                }
            };
            let metadata = out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let etag = out.e_tag().map(str::to_owned);
            // Whoever may write to the bucket sets the size: nothing binlogd writes is
            // larger than a segment, so nothing larger is read into memory.
            let length = out.content_length().unwrap_or(0).max(0) as u64;
            if length > MAX_OBJECT_LENGTH {
                return Err(StoreError {
                    kind: StoreErrorKind::BadRequest,
                    operation: "GET",
                    location: format!("{}/{key}", self.url),
                    message: format!(
                        "{length} bytes, more than any object binlogd writes ({MAX_OBJECT_LENGTH}): \
                         not read"
                    ),
                });
            }
            let body = out.body.collect().await.map_err(|e| StoreError {
                kind: StoreErrorKind::Transient,
                operation: "GET",
                location: format!("{}/{key}", self.url),
                message: error_chain(&e),
            })?;
            Ok(Some(Object {
                body: body.into_bytes(),
                metadata,
                etag,
            }))
        })
    }

    fn query<'a>(&'a self, query: ListQuery<'a>) -> StoreFuture<'a, Listing> {
        Box::pin(async move {
            let strip = self.full_key("");
            let mut listing = Listing::default();
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.url.bucket)
                .prefix(self.full_key(query.prefix))
                .set_start_after(query.start_after.map(|key| self.full_key(key)))
                .set_delimiter(query.one_level.then(|| "/".to_owned()));
            if let Some(limit) = query.limit {
                // A page is at most 1,000 keys: a smaller limit is one request.
                request = request.max_keys(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
            }
            let mut pages = request.into_paginator().send();
            let full = |listing: &Listing| {
                query
                    .limit
                    .is_some_and(|limit| listing.objects.len() + listing.folders.len() >= limit)
            };
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error("LIST", query.prefix, e))?;
                for object in page.contents() {
                    let Some(relative) = object.key().and_then(|k| k.strip_prefix(&strip)) else {
                        continue;
                    };
                    listing.objects.push(Listed {
                        key: relative.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
                for folder in page.common_prefixes() {
                    if let Some(relative) = folder.prefix().and_then(|p| p.strip_prefix(&strip)) {
                        listing.folders.push(relative.to_owned());
                    }
                }
                if full(&listing) {
                    break;
                }
            }
            listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
            listing.folders.sort();
            Ok(listing)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.url.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| self.error("DELETE", key, e))?;
            Ok(())
        })
    }

    fn delete_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let objects = keys
                .iter()
                .map(|key| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(self.full_key(key))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError {
                    kind: StoreErrorKind::BadRequest,
                    operation: "DELETE",
                    location: self.url.to_string(),
                    message: e.to_string(),
                })?;
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError {
                    kind: StoreErrorKind::BadRequest,
                    operation: "DELETE",
                    location: self.url.to_string(),
                    message: e.to_string(),
                })?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.url.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error("DELETE", &keys[0], e))?;
            // A batch answers per key: one that failed fails the batch (a retry deletes
            // again what did go, which is nothing).
            if let Some(failed) = out.errors().first() {
                return Err(StoreError {
                    kind: StoreErrorKind::Transient,
                    operation: "DELETE",
                    location: format!("{}/{}", self.url, failed.key().unwrap_or_default()),
                    message: failed.message().unwrap_or_default().to_owned(),
                });
            }
            Ok(())
        })
    }

    fn honours_conditions(&self) -> bool {
        self.honours_conditions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_urls_name_a_bucket_and_a_prefix_and_never_credentials() {
        let url: S3Url = "s3://backups/db1/binlogs/".parse().expect("url");
        assert_eq!(
            (url.bucket.as_str(), url.prefix.as_str()),
            ("backups", "db1/binlogs")
        );
        assert_eq!(url.to_string(), "s3://backups/db1/binlogs");
        let bare: S3Url = "s3://backups".parse().expect("url");
        assert_eq!(bare.prefix, "");
        assert!("s3://key:secret@backups/x".parse::<S3Url>().is_err());
        assert!("/var/lib/binlogd".parse::<S3Url>().is_err());
        assert!("s3:///x".parse::<S3Url>().is_err());
    }

    #[test]
    fn the_status_is_read_from_a_raw_response() {
        assert_eq!(
            status_of("Response { status: StatusCode(503), ... }"),
            Some(503)
        );
        assert_eq!(status_of("nothing"), None);
    }
}
