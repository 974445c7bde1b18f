//! How the engine follows a source: the connection, the replica's identity, how to
//! resume, and when to make data durable.

use binlogd_protocol::ConnectOptions;
use std::path::Path;
use std::time::Duration;

/// How a replica session connects, resumes and reports.
#[derive(Debug)]
pub struct ReplicaConfig {
    /// The source and how to authenticate to it.
    pub connect: ConnectOptions,
    /// The replica id to register with (see [`default_server_id`]).
    pub server_id: u32,
    /// How often the source sends a heartbeat when it has nothing else to send.
    pub heartbeat: Duration,
    /// A source silent this long (no event, heartbeat or reply) is taken as gone.
    pub net_timeout: Duration,
    /// Be a semi-synchronous replica: acknowledge each transaction once durable.
    pub semi_sync: bool,
    /// Stop once everything the source has is archived, instead of following it.
    pub exit_at_end: bool,
    /// How to resume a non-empty archive from the same server.
    pub resume_by: ResumeBy,
    /// With an empty archive, the binlog file to start at instead of the oldest.
    pub start_file: Option<String>,
    /// The longest wait between reconnection attempts.
    pub max_retry_delay: Duration,
    /// Whether the archive is encrypted on its way to the store (for the warning about a
    /// source that encrypts its binlogs, which replicas receive decrypted).
    pub archive_encrypted: bool,
    /// When to make what arrived durable.
    pub durability: DurabilityPolicy,
}

impl ReplicaConfig {
    /// `HOST:PORT` of the source, for logs and the archive's record of the source.
    pub fn address(&self) -> String {
        format!("{}:{}", self.connect.host, self.connect.port)
    }
}

/// How to resume a non-empty archive from the same server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumeBy {
    /// By GTID when the archive has GTIDs, else by position.
    #[default]
    Auto,
    /// Everything after the archive's GTID state (fails if the server's history does
    /// not contain it).
    Gtid,
    /// The archive's last file, from where its copy ends.
    Position,
}

/// When the pump makes what arrived durable, and how often it looks up from the socket.
///
/// A sync is asked for whenever the stream has nothing more ready (so a quiet source's
/// last transaction is on disk at once) and, under load, once `sync_after_bytes` are
/// unsynced or `sync_after` has passed since the last one, never two at a time. Looking
/// at the clock, the shutdown flag and finished syncs for every event cost 9% of a pull
/// (`cargo xtask bench-pull`), so the pump does it every `look_every` pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurabilityPolicy {
    /// Pieces between looks at the clock, the shutdown flag and finished syncs (rounded
    /// up to a power of two: the pump tests it with a mask, as a division per event
    /// would show in a pull).
    pub look_every: u32,
    /// Pieces between yields to other tasks (`/metrics` answers during a long backlog);
    /// rounded up to a power of two.
    pub yield_every: u32,
    /// Unsynced bytes that call for a sync under load.
    pub sync_after_bytes: u64,
    /// Time since the last sync that calls for one under load.
    pub sync_after: Duration,
}

impl Default for DurabilityPolicy {
    fn default() -> Self {
        DurabilityPolicy {
            look_every: 256,
            yield_every: 1024,
            sync_after_bytes: 4 << 20,
            sync_after: Duration::from_millis(100),
        }
    }
}

/// A replica id derived from the archive's path: stable across restarts with the same
/// archive, and unlikely to collide with real servers (see [`server_id_from`]).
pub fn default_server_id(archive: &Path) -> u32 {
    let path = std::fs::canonicalize(archive).unwrap_or_else(|_| archive.to_owned());
    server_id_from(path.as_os_str().as_encoded_bytes())
}

/// A replica id derived from a name (an archive's path or URL): stable, and at or above
/// 2^30, where hand-numbered servers rarely are.
pub fn server_id_from(name: &[u8]) -> u32 {
    let hash = crc32fast::hash(name);
    (1 << 30) | (hash & ((1 << 30) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_server_id_is_stable_and_out_of_the_usual_range() {
        let id = default_server_id(Path::new("/var/lib/binlogd"));
        assert_eq!(id, default_server_id(Path::new("/var/lib/binlogd")));
        assert!(id >= 1 << 30);
        assert_ne!(id, server_id_from(b"s3://bucket/db1"));
    }
}
