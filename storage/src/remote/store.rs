//! The few object-store operations an object archive needs, behind one small trait.
//!
//! Kept to what S3, Azure Blob and GCS all offer (whole-object put and get, prefix
//! listing, delete, and create-if-absent / replace-if-unchanged for the lease), so another
//! backend is one more implementation of [`ObjectStore`].

use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// What a store operation returns, boxed so the trait stays object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// User metadata stored with an object (`x-amz-meta-*` on S3): small ASCII strings.
pub type Metadata = BTreeMap<String, String>;

/// An object read back.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its bytes.
    pub body: Bytes,
    /// Its user metadata.
    pub metadata: Metadata,
    /// The store's version tag of it (for conditional writes).
    pub etag: Option<String>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// The object's size in bytes.
    pub size: u64,
}

/// What to list: S3's ListObjectsV2 parameters, which every store of note has in some form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListQuery<'a> {
    /// Only keys that start with this (relative to the store's prefix).
    pub prefix: &'a str,
    /// Only keys that sort after this one (it need not exist): how a reader that knows
    /// where it stopped asks only for what is new, whatever came before.
    pub start_after: Option<&'a str>,
    /// One level only: keys below the next `/` after `prefix` come back as the folders
    /// that hold them, once each, not as keys.
    pub one_level: bool,
    /// Enough once this many entries (keys and folders) are in hand: no further page is
    /// asked for (the last page may bring more).
    pub limit: Option<usize>,
}

/// A listing's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The keys, in key order.
    pub objects: Vec<Listed>,
    /// With [`ListQuery::one_level`]: the folders below the prefix (each ending in `/`),
    /// in key order.
    pub folders: Vec<String>,
}

/// How a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The bucket (or container) does not exist.
    NoSuchBucket,
    /// The credentials were refused or lack a permission.
    AccessDenied,
    /// The store refused the request as malformed, e.g. a wrong SSE-C key.
    BadRequest,
    /// A conditional write found the object in another state than required.
    PreconditionFailed,
    /// Worth retrying: a timeout, a connection failure, a 5xx or throttling.
    Transient,
}

/// A failed store operation, naming the operation and the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {location}: {message}")]
pub struct StoreError {
    /// What failed.
    pub kind: StoreErrorKind,
    /// `PUT`, `GET`, `LIST` or `DELETE`.
    pub operation: &'static str,
    /// The full location (`s3://bucket/prefix/key`).
    pub location: String,
    /// The store's own words.
    pub message: String,
}

impl StoreError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }
}

/// A bucket and prefix of an object store.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages: `s3://bucket/prefix`.
    fn location(&self) -> String;

    /// Stores `body` under `key`, replacing any object there.
    fn put<'a>(&'a self, key: &'a str, body: Bytes, metadata: &'a Metadata) -> StoreFuture<'a, ()>;

    /// Stores `body` under `key` only if no object is there (`If-None-Match: *`).
    /// Returns the new object's tag, or `None` when one existed. Stores that ignore the
    /// condition replace the object: see [`ObjectStore::honours_conditions`].
    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        body: Bytes,
        metadata: &'a Metadata,
    ) -> StoreFuture<'a, Option<String>>;

    /// Replaces the object under `key` only if its tag is still `etag` (`If-Match`).
    /// Returns the new tag, or `None` when the object changed or is gone.
    fn put_if_match<'a>(
        &'a self,
        key: &'a str,
        body: Bytes,
        metadata: &'a Metadata,
        etag: &'a str,
    ) -> StoreFuture<'a, Option<String>>;

    /// Reads the object under `key`; `None` if there is none.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Object>>;

    /// Keys as `query` asks (relative to the store's prefix), in key order.
    fn query<'a>(&'a self, query: ListQuery<'a>) -> StoreFuture<'a, Listing>;

    /// Every key under `prefix` (relative to the store's prefix), in key order. Its cost
    /// grows with what is under `prefix`: readers list only where few keys can be.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<Listed>> {
        Box::pin(async move {
            Ok(self
                .query(ListQuery {
                    prefix,
                    ..ListQuery::default()
                })
                .await?
                .objects)
        })
    }

    /// Removes the object under `key` (nothing if there is none).
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Removes the objects under `keys` (at most 1,000: one request where the store has
    /// a batch delete, as S3's DeleteObjects).
    fn delete_many<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            for key in keys {
                self.delete(key).await?;
            }
            Ok(())
        })
    }

    /// Whether conditional writes are enforced. Known from a probe at open time.
    fn honours_conditions(&self) -> bool;
}
