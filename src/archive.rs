//! Opening the archive a command line names — a directory or `s3://BUCKET/PREFIX` — for
//! the commands that read one (`list`, `verify`, `search`, `timeline`, `purge`,
//! `restore`); the flags themselves are in [`crate::flags`].

use crate::flags::{ArchiveArgs, Location, S3Args};
use anyhow::Context;
use binlogd_storage::remote::read::RemoteArchive;
use binlogd_storage::remote::s3::{S3Store, S3Url};
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::{Archive, LocalArchive};
use std::path::Path;
use std::sync::Arc;

/// A local archive, which must exist.
pub fn open_local(root: &Path) -> anyhow::Result<LocalArchive> {
    if !root.join(binlogd_storage::layout::ARCHIVE_MARKER).is_file() {
        anyhow::bail!(
            "{} is not a binlogd archive (no {})",
            root.display(),
            binlogd_storage::layout::ARCHIVE_MARKER
        );
    }
    Ok(LocalArchive::open(root)?)
}

/// An object archive, opened for reading.
pub async fn open_remote(url: &S3Url, s3: &S3Args) -> anyhow::Result<RemoteArchive> {
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(url.clone(), &s3.options()?).await);
    let key = s3.client_key()?;
    Ok(RemoteArchive::open(store, key)
        .await
        .with_context(|| format!("opening {url}"))?
        .with_max_parallel(usize::from(s3.max_parallel)))
}

/// The archive `args` names, local or remote, opened for reading.
pub async fn open_archive(args: &ArchiveArgs) -> anyhow::Result<Archive> {
    Ok(match args.location()? {
        Location::Local(root) => Archive::Local(open_local(&root)?),
        Location::Remote(url) => Archive::Remote(open_remote(&url, &args.s3).await?),
    })
}

/// The archive `args` names, as `binlogd serve` reads it (a directory it may follow as a
/// stream writes it, or an object store).
pub async fn served_archive(args: &ArchiveArgs) -> anyhow::Result<binlogd_serve::ServedArchive> {
    Ok(match args.location()? {
        Location::Local(root) => {
            open_local(&root)?;
            binlogd_serve::ServedArchive::Local(root)
        }
        Location::Remote(url) => {
            let options = args.s3.options()?;
            binlogd_serve::ServedArchive::Remote(binlogd_serve::RemoteSource {
                store: Arc::new(S3Store::connect(url, &options).await),
                key: args.s3.client_key()?,
            })
        }
    })
}

/// Runs `work` on a one-thread runtime: the readers talk to one store at a time.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}
