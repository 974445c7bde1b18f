//! The object archive: an archive kept in an object store (S3), fed from the local spool.
//!
//! The format is specified in `storage/README.md` and its types are in [`format`](mod@format). [`store`] is the small interface to the
//! store, [`s3`] its S3 implementation, [`lease`] the one-writer rule, [`keys`] the object names, [`upload`] the
//! checkpointer that ships durable spool bytes as segments and seals closed files, and
//! [`read`] what readers use: the catalogue, listings and whole files. [`segment`] packs
//! and unpacks one segment object (compression, [`crypt`]'s client-side encryption, CRC).
//! [`catalogue`] reads the catalogue with its version and writes it back only over it.
//! `compact` rewrites a sealed file's small segments as a few large ones, `consolidate`
//! does the same for an open file's part so far and writes its partial manifest (`partial`
//! reads it), `deletion` carries out what either replaced once `--delete-delay` passed, and
//! [`unsealed`] follows a file still being written, listing only what is new, and
//! [`whole_index`] keeps a sealed file's index in a few large objects.

pub mod catalogue;
mod compact;
mod consolidate;
pub mod crypt;
mod deletion;
pub mod file_segments;
pub mod format;
pub mod keys;
pub mod lease;
mod partial;
pub mod read;
pub mod s3;
pub mod segment;
pub mod store;
#[cfg(test)]
mod test_fixtures;
pub mod unsealed;
pub mod upload;
pub mod whole_index;
