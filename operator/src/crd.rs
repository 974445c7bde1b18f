//! The custom resources, API group `binlogd.io`, version `v1alpha1`.
//!
//! - [`BinlogServer`]: a `binlogd stream` that follows one MySQL or MariaDB primary and
//!   archives its binlogs to S3; its status says how far the archive reaches.
//! - [`PointInTimeRestore`]: a `binlogd restore --datadir` run as a Job on the volume of a
//!   database restored from a base backup; its status follows the restore.
//!
//! The types are the schema: `kube`'s derive turns them into the CustomResourceDefinitions
//! in `deploy/crds/` (`binlogd-operator crds`), with structural schemas (every field typed)
//! and the printer columns `kubectl get` shows. Field names follow Kubernetes conventions
//! (camelCase; references to Secrets by name and key, so credentials are mounted as files).

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group.
pub const GROUP: &str = "binlogd.io";

/// A key of a Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key within it.
    pub key: String,
}

/// How binlogd reaches the primary.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Host name or Service of the primary (a Service that follows failovers is best:
    /// binlogd follows the new primary by GTID into a new epoch).
    pub host: String,
    /// Port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The replication user's name (needs REPLICATION SLAVE and REPLICATION CLIENT, or
    /// BINLOG MONITOR on MariaDB 10.5+).
    pub user: String,
    /// The replication user's password.
    pub password_secret: SecretKeyRef,
    /// TLS to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// The server id binlogd registers with (by default one derived from the archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
}

fn default_port() -> u16 {
    3306
}

/// TLS to the primary: `binlogd stream --tls-mode`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// disabled, preferred, required, verify-ca or verify-identity. When not given:
    /// verify-ca if a CA is given (a CA is given to be checked against), else preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    /// The CA certificate (PEM) that signed the server's, for verify-ca and
    /// verify-identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
}

/// `--tls-mode`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No TLS.
    Disabled,
    /// TLS when the server offers it.
    Preferred,
    /// TLS, certificate not checked.
    Required,
    /// TLS, certificate signed by the CA.
    VerifyCa,
    /// TLS, certificate signed by the CA and naming the host.
    VerifyIdentity,
}

/// Where the archive lives.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The bucket.
    pub bucket: String,
    /// The prefix within it (one archive per prefix).
    pub prefix: String,
    /// The region (else the SDK's default chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An S3-compatible endpoint (MinIO, Garage, Ceph), addressed path-style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Access keys: a key of a Secret holding an AWS shared credentials file (`[default]`,
    /// `aws_access_key_id = ...`, `aws_secret_access_key = ...`), mounted as a file.
    /// Without it, the pod's service-account identity (IRSA, workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretKeyRef>,
    /// The service account the pods run as (for a cloud identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// A customer key for SSE-C (32 bytes, or 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_c_key_secret: Option<SecretKeyRef>,
    /// Segment compression.
    #[serde(default)]
    pub compression: Compression,
    /// Seconds between checkpoints of the growing file to the store (the RPO without
    /// semi-sync).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_seconds: u32,
    /// How long archived files are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

fn default_checkpoint_interval() -> u32 {
    1
}

/// `--compression`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (the default).
    #[default]
    Zstd,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// None.
    None,
}

/// `--retention` and `--keep-after-gtid`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Files older than this go (e.g. `720h`).
    pub max_age: String,
    /// Never drop what a restore from this GTID state needs (the oldest kept backup's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_after_gtid: Option<String>,
}

/// The local spool binlogd streams into before the store.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpoolSpec {
    /// The volume's size (a quantity such as `20Gi`).
    pub size: String,
    /// The storage class (else the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// A binlog server: `binlogd stream` following one primary into an S3 archive.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "binlogd.io",
    version = "v1alpha1",
    kind = "BinlogServer",
    namespaced,
    status = "BinlogServerStatus",
    shortname = "bls",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".status.currentSource"}"#,
    printcolumn = r#"{"name":"Last Archived","type":"string","jsonPath":".status.lastArchivedGtid"}"#,
    printcolumn = r#"{"name":"Recoverable To","type":"string","jsonPath":".status.lastRecoverableTime"}"#,
    printcolumn = r#"{"name":"Lag","type":"number","jsonPath":".status.lagSeconds"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BinlogServerSpec {
    /// The primary to follow.
    pub source: SourceSpec,
    /// The archive.
    pub storage: StorageSpec,
    /// Be a semi-sync replica: the primary's commits wait until binlogd has the
    /// transaction durable (zero RPO, at the cost of commit latency).
    #[serde(default)]
    pub semi_sync: bool,
    /// The spool volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolSpec>,
    /// The binlogd image (else the operator's own version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Nodes the pod may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Serve the archive to replicas (`binlogd serve`, in a container beside the stream,
    /// on a port of the Service): MySQL and MariaDB replicas, and restores by replication,
    /// read it as they would read the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeSpec>,
    /// Have the Prometheus Operator scrape binlogd: the operator keeps a ServiceMonitor
    /// (monitoring.coreos.com/v1) for this server's metrics, whose targets carry
    /// `job="binlogd"` as the alerting rules in deploy/monitoring/ expect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// How Prometheus finds a BinlogServer's metrics.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// How often to scrape (a Prometheus duration: 15s, 1m).
    #[serde(default = "default_scrape_interval")]
    pub interval: String,
    /// Labels on the ServiceMonitor, for a Prometheus whose serviceMonitorSelector wants
    /// them (e.g. `release: kube-prometheus-stack`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_scrape_interval() -> String {
    "30s".to_owned()
}

/// How a BinlogServer serves its archive to replicas.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServeSpec {
    /// The port replicas connect to, on the pod and the Service.
    #[serde(default = "default_serve_port")]
    pub port: i32,
    /// A key of a Secret holding the accounts replicas log in with: the lines `binlogd
    /// serve-user NAME` writes (password hashes, never passwords).
    pub users_secret: SecretKeyRef,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`): TLS for replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// Refuse replicas that do not use TLS.
    #[serde(default)]
    pub require_tls: bool,
}

fn default_serve_port() -> i32 {
    3307
}

/// What the operator last saw of a binlog server.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogServerStatus {
    /// Ready, Streaming, StorageReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The GTID state the archive holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_gtid: Option<String>,
    /// When the last archived transaction committed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    /// The latest time a restore can reach from the archive (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_recoverable_time: Option<String>,
    /// Seconds behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// The server binlogd follows now (`server_id` and address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_source: Option<String>,
    /// The replicas `spec.serve` is sending the archive to now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ServedReplica>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A replica reading the archive from `binlogd serve`, as its metrics report it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServedReplica {
    /// Where it connects from (address:port).
    pub peer: String,
    /// The account it logged in as.
    pub user: String,
    /// Its `server_id`.
    pub server_id: u32,
    /// The archived file it has been sent up to.
    pub file: String,
    /// The offset in that file.
    pub position: u64,
    /// Seconds between now and the source's timestamp of the last event sent (0 once it
    /// has everything).
    pub lag_seconds: f64,
    /// Event bytes sent since it connected.
    pub sent_bytes: u64,
}

/// Where to restore to: exactly one of these.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// The last transaction committed at or before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Everything before this transaction (the bad one), leaving it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_gtid: Option<String>,
    /// Up to and including these GTIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_gtid: Option<String>,
    /// Everything archived.
    #[serde(default)]
    pub latest: bool,
}

/// The database a restore works on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The PersistentVolumeClaim holding the datadir, already restored from a base backup:
    /// the `xtrabackup_info` that mariadb-backup's (or XtraBackup's) copy-back leaves there
    /// says where the archive takes over; a MySQL CLONE keeps its GTID state inside, which
    /// the server started on it reports.
    pub pvc_name: String,
    /// The datadir's path within the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// The database image whose `mariadbd` (or, for a MySQL datadir, `mysqld`) replays. binlogd is copied into
    /// it and needs glibc 2.34 or newer there (Debian 12, Ubuntu 22.04, EL 9 and later);
    /// an image on an older one fails the Job with "GLIBC_2.34 not found".
    pub image: String,
    /// The database's configuration file, from a ConfigMap (else the image's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMapKeyRef>,
    /// The GTID state the base backup holds, if the datadir names none (no
    /// `xtrabackup_info`, not a MySQL clone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_gtid: Option<String>,
    /// The user the database image's server runs as, which owns the datadir: the restore
    /// runs as it, never as root (999, the `mysql` user of the official `mariadb` and
    /// `mysql` images, unless set; Bitnami's images use 1001).
    #[serde(default = "database_user_by_default")]
    pub run_as_user: i64,
    /// Its group, which the pod's volumes are given to (fsGroup); 999 unless set.
    #[serde(default = "database_user_by_default")]
    pub run_as_group: i64,
}

fn database_user_by_default() -> i64 {
    999
}

/// A key of a ConfigMap in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// The ConfigMap's name.
    pub name: String,
    /// The key within it.
    pub key: String,
}

/// Where the restore Job stages relay logs (the temporary server reads them from there).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StagingSpec {
    /// An emptyDir of at most this size (a quantity such as `50Gi`); without a
    /// `storageClassName`.
    pub size: String,
    /// A PVC of `size` in this storage class instead of an emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// A point-in-time restore: `binlogd restore --datadir` as a Job on a database's volume.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "binlogd.io",
    version = "v1alpha1",
    kind = "PointInTimeRestore",
    namespaced,
    status = "PointInTimeRestoreStatus",
    shortname = "pitr",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.target"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Reached","type":"string","jsonPath":".status.reachedGtid"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PointInTimeRestoreSpec {
    /// The BinlogServer whose archive to restore from (in this namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_server_ref: Option<String>,
    /// Or the archive given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Where to stop.
    pub target: RestoreTarget,
    /// Fail when the target is beyond the archive (the default): a restore short of the
    /// point asked is a failure to be seen. `false` restores as far as the archive goes,
    /// and says so with a `ShortOfTarget` warning.
    #[serde(default = "strict_by_default")]
    pub strict: bool,
    /// The database to restore into.
    pub database: DatabaseSpec,
    /// Parallel applier workers (else the Job's CPU count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_workers: Option<u32>,
    /// Where relay logs are staged (else the datadir's volume). Not with
    /// `method: replication`, which stages nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<StagingSpec>,
    /// How the archive reaches the server: `relayLogs` (the default) or `replication`.
    #[serde(default, skip_serializing_if = "RestoreMethod::is_default")]
    pub method: RestoreMethod,
    /// The Job's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// How a restore's server receives the archived transactions.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RestoreMethod {
    /// Staged as relay logs beside the server, then applied: the fastest (`binlogd
    /// restore`'s default).
    #[default]
    RelayLogs,
    /// Replicated from a `binlogd serve` inside the Job, cut at the target: nothing is
    /// staged, so no room is needed for relay-log copies, and applying begins at once
    /// (`binlogd restore --via-replication`).
    Replication,
}

impl RestoreMethod {
    /// Whether this is the default (not written out).
    pub fn is_default(&self) -> bool {
        *self == RestoreMethod::default()
    }
}

/// Where a restore is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Accepted, not started.
    Pending,
    /// Reading the archive's index.
    Planning,
    /// Staging relay logs (`method: replication`: the server connecting to the Job's
    /// `binlogd serve`).
    Downloading,
    /// The server's applier replays.
    Applying,
    /// Done: the database is at the target.
    Succeeded,
    /// Stopped; the message says why and what to do.
    Failed,
}

/// The plan a restore follows.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Archived files replayed.
    pub files: u32,
    /// Bytes replayed.
    pub bytes: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// The GTID state the restore ends at.
    pub target_gtid: String,
    /// When the last transaction replayed committed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
}

/// What the operator last saw of a restore.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointInTimeRestoreStatus {
    /// The target, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where the restore is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// How much is done (`42%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The GTID state reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_gtid: Option<String>,
    /// When the last transaction applied committed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_time: Option<String>,
    /// What happened, and on failure what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn strict_by_default() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_strict_unless_it_says_otherwise() {
        let spec = |extra: serde_json::Value| -> PointInTimeRestoreSpec {
            let mut value = serde_json::json!({
                "binlogServerRef": "db1",
                "target": {"latest": true},
                "database": {"pvcName": "data-db1-0", "image": "mariadb:10.11"}
            });
            if let (Some(map), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
                map.extend(extra.clone());
            }
            serde_json::from_value(value).expect("a spec")
        };
        assert!(spec(serde_json::json!({})).strict);
        assert!(!spec(serde_json::json!({"strict": false})).strict);
    }
}
