//! What the operator asks Kubernetes to run: pure functions from a custom resource to the
//! objects that carry it out, so that every field can be checked in a test.
//!
//! - A [`BinlogServer`] becomes a one-replica StatefulSet running `binlogd stream` (the spool
//!   on a PersistentVolumeClaim from its template, `/healthz` probes, metrics on 9606) and a
//!   headless Service that governs it and exposes the metrics.
//! - A BinlogServer being deleted gets, once its pod is gone, a Job running `binlogd upload`
//!   on its spool, so that nothing the stream spooled is lost with the volume.
//! - A [`PointInTimeRestore`] becomes a Job whose pod runs the database's own image, with the
//!   `binlogd` binary copied in by an init container, and runs `binlogd restore --datadir` on
//!   the database's volume: binlogd starts the database's server there, networking off, and
//!   replays into it.
//!
//! Secrets reach binlogd as files (mode 0400), never as environment variables: the
//! replication password (`--password-file`), the TLS CA, the SSE-C key, and the AWS shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE` names the file, not the secret).

use crate::crd::{
    BinlogServer, BinlogServerSpec, Compression, PointInTimeRestore, RestoreMethod, RestoreTarget,
    SecretKeyRef, ServeSpec, StorageSpec, TlsMode,
};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use std::collections::BTreeMap;

/// The binlogd image when a resource names none: this operator's own version.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/binlogd/binlogd:", env!("CARGO_PKG_VERSION"));
/// Where binlogd serves `/metrics` and `/healthz`.
pub const METRICS_PORT: i32 = 9606;
/// The port of `binlogd serve`'s `/metrics` in a BinlogServer's pod (with `spec.serve`).
pub const SERVE_METRICS_PORT: i32 = 9607;
/// The user (and group) the binlogd image runs as (`deploy/Dockerfile`); its pods give
/// their volumes and Secret files to this group, so that the user can use them.
pub const BINLOGD_UID: i64 = 65532;
/// Where the spool volume is mounted, and the spool in it.
const SPOOL_MOUNT: &str = "/var/lib/binlogd";
const SPOOL_DIR: &str = "/var/lib/binlogd/spool";
/// The spool's size when a BinlogServer names none.
const DEFAULT_SPOOL_SIZE: &str = "10Gi";
/// Where the database image keeps its datadir.
const DATADIR_MOUNT: &str = "/var/lib/mysql";
/// Where the init container puts the binlogd binary in a restore Job.
const BINLOGD_BIN_DIR: &str = "/binlogd-bin";

/// Why a resource cannot be turned into workloads.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    /// The resource has no name or uid yet (it was not read from the API server).
    #[error("{0} has no name or uid: only a stored resource can own workloads")]
    NotStored(&'static str),
    /// The spec says something impossible.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, as a path (`spec.target`).
        field: &'static str,
        /// What is wrong, and what to do.
        problem: String,
    },
}

/// The labels of everything made for `instance`.
pub fn labels(instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "binlogd".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), instance.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "binlogd-operator".to_owned(),
        ),
    ])
}

/// `s3://BUCKET/PREFIX`.
pub fn archive_url(storage: &StorageSpec) -> String {
    format!(
        "s3://{}/{}",
        storage.bucket,
        storage.prefix.trim_matches('/')
    )
}

fn owner<K: Resource<DynamicType = ()>>(
    resource: &K,
    kind: &'static str,
) -> Result<(String, String, OwnerReference), WorkloadError> {
    let meta = resource.meta();
    let name = meta.name.clone().ok_or(WorkloadError::NotStored(kind))?;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let reference = resource
        .controller_owner_ref(&())
        .ok_or(WorkloadError::NotStored(kind))?;
    Ok((name, namespace, reference))
}

/// Mounts, volumes, arguments and environment a pod needs for a set of files from Secrets.
#[derive(Debug, Default)]
struct Files {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl Files {
    /// Mounts `secret`'s key as `dir/file` (read-only, mode 0400) and returns the path.
    fn secret(&mut self, volume: &str, secret: &SecretKeyRef, dir: &str, file: &str) -> String {
        self.volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: file.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        format!("{dir}/{file}")
    }
}

/// The `--archive` and S3 options of `storage`, and the files and environment they need.
fn storage_args(storage: &StorageSpec, files: &mut Files) -> (Vec<String>, Vec<EnvVar>) {
    let mut args = vec!["--archive".to_owned(), archive_url(storage)];
    let mut env = Vec::new();
    if let Some(region) = &storage.region {
        args.extend(["--s3-region".to_owned(), region.clone()]);
    }
    if let Some(endpoint) = &storage.endpoint {
        args.extend(["--s3-endpoint".to_owned(), endpoint.clone()]);
    }
    if let Some(secret) = &storage.credentials_secret {
        let path = files.secret("aws-credentials", secret, "/etc/binlogd/aws", "credentials");
        env.push(EnvVar {
            name: "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            value: Some(path),
            ..EnvVar::default()
        });
    }
    if let Some(secret) = &storage.sse_c_key_secret {
        let path = files.secret("sse-c-key", secret, "/etc/binlogd/sse-c", "key");
        args.extend(["--sse-c-key-file".to_owned(), path]);
    }
    (args, env)
}

/// The StatefulSet that runs `binlogd stream` for `server`.
pub fn binlog_server_statefulset(server: &BinlogServer) -> Result<StatefulSet, WorkloadError> {
    let (name, namespace, owner) = owner(server, "BinlogServer")?;
    let spec = &server.spec;
    let mut files = Files::default();
    let source = &spec.source;
    let password = files.secret(
        "source-password",
        &source.password_secret,
        "/etc/binlogd/source",
        "password",
    );
    let mut args = vec![
        "stream".to_owned(),
        "--source".to_owned(),
        format!("mysql://{}@{}:{}", source.user, source.host, source.port),
        "--password-file".to_owned(),
        password,
    ];
    let (archive_args, env) = storage_args(&spec.storage, &mut files);
    args.extend(archive_args);
    args.extend([
        "--spool-dir".to_owned(),
        SPOOL_DIR.to_owned(),
        "--metrics-addr".to_owned(),
        format!("0.0.0.0:{METRICS_PORT}"),
        "--log-format".to_owned(),
        "json".to_owned(),
        "--no-progress".to_owned(),
        "--compression".to_owned(),
        compression_arg(spec.storage.compression).to_owned(),
        "--checkpoint-interval".to_owned(),
        spec.storage.checkpoint_interval_seconds.to_string(),
    ]);
    if let Some(retention) = &spec.storage.retention {
        args.extend(["--retention".to_owned(), retention.max_age.clone()]);
        if let Some(gtid) = &retention.keep_after_gtid {
            args.extend(["--keep-after-gtid".to_owned(), gtid.clone()]);
        }
    }
    if let Some(tls) = &source.tls {
        let mode = tls.mode.unwrap_or(if tls.ca_secret.is_some() {
            TlsMode::VerifyCa
        } else {
            TlsMode::Preferred
        });
        let mode = match mode {
            TlsMode::Disabled => "disabled",
            TlsMode::Preferred => "preferred",
            TlsMode::Required => "required",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyIdentity => "verify-identity",
        };
        args.extend(["--tls-mode".to_owned(), mode.to_owned()]);
        if let Some(ca) = &tls.ca_secret {
            let path = files.secret("tls-ca", ca, "/etc/binlogd/tls", "ca.pem");
            args.extend(["--tls-ca".to_owned(), path]);
        }
    }
    if let Some(id) = source.server_id {
        args.extend(["--server-id".to_owned(), id.to_string()]);
    }
    if spec.semi_sync {
        args.push("--semi-sync".to_owned());
    }
    let serve = spec
        .serve
        .as_ref()
        .map(|serve| serve_container(spec, serve));
    let mut mounts = vec![spool_mount()];
    mounts.append(&mut files.mounts);
    let health = |initial_delay: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "binlogd".to_owned(),
        image: Some(binlogd_image(spec)),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: METRICS_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(health(5)),
        liveness_probe: Some(health(30)),
        resources: spec.resources.clone(),
        security_context: Some(binlogd_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let spool = spec.spool.as_ref();
    let labels = labels(&name, "stream");
    Ok(StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: std::iter::once(container)
                        .chain(serve.as_ref().map(|(c, _)| c.clone()))
                        .collect(),
                    security_context: Some(binlogd_pod_security()),
                    volumes: {
                        // The serve container mounts some of the stream's Secrets too
                        // (the store's credentials): each volume once.
                        let mut volumes = files.volumes;
                        for volume in serve.into_iter().flat_map(|(_, v)| v) {
                            if !volumes.iter().any(|v| v.name == volume.name) {
                                volumes.push(volume);
                            }
                        }
                        (!volumes.is_empty()).then_some(volumes)
                    },
                    service_account_name: spec.storage.service_account_name.clone(),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    // On SIGTERM binlogd stops streaming at once and uploads what the spool
                    // holds, trying a failing store for 30 s: time enough for both.
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("spool".to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(claim_spec(
                    spool.map_or(DEFAULT_SPOOL_SIZE, |s| s.size.as_str()),
                    spool.and_then(|s| s.storage_class_name.clone()),
                )),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

/// The container that runs `binlogd serve` beside the stream, and the volumes it needs:
/// it reads the same archive in the store (the uploaded files, about a second behind the
/// stream), with only the store's credentials and its own Secrets mounted.
fn serve_container(spec: &BinlogServerSpec, serve: &ServeSpec) -> (Container, Vec<Volume>) {
    let mut files = Files::default();
    let (archive_args, env) = storage_args(&spec.storage, &mut files);
    let users = files.secret(
        "serve-users",
        &serve.users_secret,
        "/etc/binlogd/serve-users",
        "users",
    );
    let mut args = vec!["serve".to_owned()];
    args.extend(archive_args);
    args.extend([
        "--listen".to_owned(),
        format!("0.0.0.0:{}", serve.port),
        "--users-file".to_owned(),
        users,
        "--metrics-addr".to_owned(),
        format!("0.0.0.0:{SERVE_METRICS_PORT}"),
        "--log-format".to_owned(),
        "json".to_owned(),
    ]);
    if let Some(secret) = &serve.tls_secret {
        for (volume, key, flag) in [
            ("serve-tls-cert", "tls.crt", "--tls-cert"),
            ("serve-tls-key", "tls.key", "--tls-key"),
        ] {
            let path = files.secret(
                volume,
                &SecretKeyRef {
                    name: secret.clone(),
                    key: key.to_owned(),
                },
                &format!("/etc/binlogd/{volume}"),
                key,
            );
            args.extend([flag.to_owned(), path]);
        }
    }
    if serve.require_tls {
        args.push("--require-tls".to_owned());
    }
    let container = Container {
        name: "serve".to_owned(),
        image: Some(binlogd_image(spec)),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("replication".to_owned()),
                container_port: serve.port,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("serve-metrics".to_owned()),
                container_port: SERVE_METRICS_PORT,
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::String("serve-metrics".to_owned()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(binlogd_container_security()),
        volume_mounts: Some(files.mounts),
        ..Container::default()
    };
    (container, files.volumes)
}

/// The binlogd image a BinlogServer's pods run (its own, else this operator's version).
fn binlogd_image(spec: &BinlogServerSpec) -> String {
    spec.image
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
}

fn compression_arg(compression: Compression) -> &'static str {
    match compression {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::Bzip2 => "bzip2",
        Compression::None => "none",
    }
}

/// The pod of a binlogd container: not root, and its volumes (the spool's claim, the
/// Secrets' files, which kubelet makes group-readable) given to binlogd's group.
fn binlogd_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(BINLOGD_UID),
        run_as_group: Some(BINLOGD_UID),
        fs_group: Some(BINLOGD_UID),
        // A large spool is not walked on every start, only when its top is not ours.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// A binlogd container: no privileges, and nothing written outside its volumes.
fn binlogd_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn spool_mount() -> VolumeMount {
    VolumeMount {
        name: "spool".to_owned(),
        mount_path: SPOOL_MOUNT.to_owned(),
        ..VolumeMount::default()
    }
}

/// The PersistentVolumeClaim the StatefulSet made from its `spool` template for its one pod.
pub fn spool_claim_name(server: &str) -> String {
    format!("spool-{server}-0")
}

/// The name of the Job that uploads a deleted BinlogServer's spool.
pub fn spool_upload_job_name(server: &str) -> String {
    format!("{server}-upload-spool")
}

/// The Job that runs `binlogd upload` on a deleted BinlogServer's spool once its pod is
/// gone: it ends well only when everything durable in the spool is in the store, after
/// which the spool's claim may go. It has no owner: the garbage collector would remove it
/// with the BinlogServer it works for.
pub fn spool_upload_job(server: &BinlogServer) -> Result<Job, WorkloadError> {
    let (name, namespace, _) = owner(server, "BinlogServer")?;
    let spec = &server.spec;
    let mut files = Files::default();
    let mut args = vec![
        "upload".to_owned(),
        "--log-format".to_owned(),
        "json".to_owned(),
        "--spool-dir".to_owned(),
        SPOOL_DIR.to_owned(),
    ];
    let (archive_args, env) = storage_args(&spec.storage, &mut files);
    args.extend(archive_args);
    args.extend([
        "--compression".to_owned(),
        compression_arg(spec.storage.compression).to_owned(),
    ]);
    let mut volumes = vec![Volume {
        name: "spool".to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: spool_claim_name(&name),
            read_only: Some(false),
        }),
        ..Volume::default()
    }];
    volumes.append(&mut files.volumes);
    let mut mounts = vec![spool_mount()];
    mounts.append(&mut files.mounts);
    let labels = labels(&name, "upload-spool");
    let container = Container {
        name: "upload".to_owned(),
        image: Some(binlogd_image(spec)),
        args: Some(args),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        env: (!env.is_empty()).then_some(env),
        resources: spec.resources.clone(),
        security_context: Some(binlogd_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Ok(job(
        ObjectMeta {
            name: Some(spool_upload_job_name(&name)),
            namespace: Some(namespace),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        // binlogd upload retries the store itself (--patience); a second pod helps when
        // the first one's node went away.
        1,
        PodSpec {
            containers: vec![container],
            security_context: Some(binlogd_pod_security()),
            service_account_name: spec.storage.service_account_name.clone(),
            volumes: Some(volumes),
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            ..PodSpec::default()
        },
    ))
}

/// A one-node volume claim of `size` in `class` (the cluster's default when `None`).
fn claim_spec(size: &str, class: Option<String>) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
        storage_class_name: class,
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_owned(),
                Quantity(size.to_owned()),
            )])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

/// The headless Service that governs `server`'s StatefulSet and exposes its metrics (and,
/// with `spec.serve`, the port replicas connect to).
pub fn binlog_server_service(server: &BinlogServer) -> Result<Service, WorkloadError> {
    let (name, namespace, owner) = owner(server, "BinlogServer")?;
    let labels = labels(&name, "stream");
    let mut ports = vec![ServicePort {
        name: Some("metrics".to_owned()),
        port: METRICS_PORT,
        target_port: Some(IntOrString::String("metrics".to_owned())),
        ..ServicePort::default()
    }];
    if let Some(serve) = &server.spec.serve {
        ports.push(ServicePort {
            name: Some("replication".to_owned()),
            port: serve.port,
            target_port: Some(IntOrString::String("replication".to_owned())),
            ..ServicePort::default()
        });
    }
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(labels),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The ServiceMonitor (Prometheus Operator) for `server`'s metrics, when
/// `spec.monitoring` asks for one. Every target gets `job="binlogd"`, the job the alerting
/// rules in deploy/monitoring/ select, whatever the Service is called.
pub fn binlog_server_service_monitor(
    server: &BinlogServer,
) -> Result<Option<DynamicObject>, WorkloadError> {
    let Some(monitoring) = &server.spec.monitoring else {
        return Ok(None);
    };
    if !is_prometheus_duration(&monitoring.interval) {
        return Err(WorkloadError::Invalid {
            field: "spec.monitoring.interval",
            problem: format!(
                "{:?} is not a Prometheus duration (30s, 1m, 1m30s)",
                monitoring.interval
            ),
        });
    }
    let (name, namespace, owner) = owner(server, "BinlogServer")?;
    let selector = labels(&name, "stream");
    let mut object_labels = selector.clone();
    object_labels.extend(monitoring.labels.clone());
    let mut monitor = DynamicObject::new(&name, &service_monitor_resource()).within(&namespace);
    monitor.metadata.labels = Some(object_labels);
    monitor.metadata.owner_references = Some(vec![owner]);
    monitor.data = serde_json::json!({
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{
                "port": "metrics",
                "path": "/metrics",
                "interval": monitoring.interval,
                "relabelings": [
                    {"action": "replace", "targetLabel": "job", "replacement": "binlogd"},
                    {"action": "replace", "targetLabel": "binlog_server", "replacement": name},
                ],
            }],
        }
    });
    Ok(Some(monitor))
}

/// monitoring.coreos.com/v1 ServiceMonitor, a kind of the Prometheus Operator's (not in
/// k8s-openapi).
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// `30s`, `1m`, `1h30m`: digits and a unit, repeated (Prometheus' own duration syntax).
fn is_prometheus_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|unit| rest.starts_with(unit));
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}

/// The `binlogd restore` options for `target`.
fn target_args(target: &RestoreTarget) -> Result<Vec<String>, WorkloadError> {
    let mut given = Vec::new();
    if let Some(time) = &target.time {
        given.push(vec!["--to-time".to_owned(), time.clone()]);
    }
    if let Some(gtid) = &target.before_gtid {
        given.push(vec!["--before-gtid".to_owned(), gtid.clone()]);
    }
    if let Some(gtid) = &target.to_gtid {
        given.push(vec!["--to-gtid".to_owned(), gtid.clone()]);
    }
    if target.latest {
        given.push(vec!["--latest".to_owned()]);
    }
    match given.len() {
        1 => Ok(given.remove(0)),
        n => Err(WorkloadError::Invalid {
            field: "spec.target",
            problem: format!(
                "give exactly one of time, beforeGtid, toGtid or latest: true ({n} given)"
            ),
        }),
    }
}

/// The Job that restores `restore` from the archive in `storage` (the restore's own, or
/// that of the BinlogServer it names), with binlogd taken from `binlogd_image`.
pub fn restore_job(
    restore: &PointInTimeRestore,
    storage: &StorageSpec,
    binlogd_image: &str,
) -> Result<Job, WorkloadError> {
    let (name, namespace, owner) = owner(restore, "PointInTimeRestore")?;
    let spec = &restore.spec;
    let database = &spec.database;
    let datadir = match &database.sub_path {
        Some(sub) => format!("{DATADIR_MOUNT}/{}", sub.trim_matches('/')),
        None => DATADIR_MOUNT.to_owned(),
    };
    let mut files = Files::default();
    // JSON log lines: the operator follows the plan and the progress in them.
    let mut args = vec![
        "restore".to_owned(),
        "--log-format".to_owned(),
        "json".to_owned(),
    ];
    let (archive_args, env) = storage_args(storage, &mut files);
    args.extend(archive_args);
    args.extend(["--datadir".to_owned(), datadir.clone()]);
    match &database.from_gtid {
        Some(gtid) => args.extend(["--from-gtid".to_owned(), gtid.clone()]),
        // --copy-back leaves xtrabackup_info in the datadir, which names the backup's GTID.
        None => args.extend(["--from-backup".to_owned(), datadir.clone()]),
    }
    args.extend(target_args(&spec.target)?);
    if spec.strict {
        args.push("--strict".to_owned());
    }
    if let Some(workers) = spec.parallel_workers {
        args.extend(["--parallel-workers".to_owned(), workers.to_string()]);
    }
    let mut volumes = vec![
        Volume {
            name: "datadir".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: database.pvc_name.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        Volume {
            name: "binlogd-bin".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "datadir".to_owned(),
            mount_path: DATADIR_MOUNT.to_owned(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "binlogd-bin".to_owned(),
            mount_path: BINLOGD_BIN_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    if let Some(config) = &database.config {
        volumes.push(Volume {
            name: "database-config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config.name.clone(),
                items: Some(vec![KeyToPath {
                    key: config.key.clone(),
                    path: "my.cnf".to_owned(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "database-config".to_owned(),
            mount_path: "/etc/binlogd/database".to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        args.extend([
            "--defaults-file".to_owned(),
            "/etc/binlogd/database/my.cnf".to_owned(),
        ]);
    }
    if spec.method == RestoreMethod::Replication {
        if spec.staging.is_some() {
            return Err(WorkloadError::Invalid {
                field: "spec.staging",
                problem: "method: replication stages no relay logs; remove staging, or use \
                          method: relayLogs"
                    .to_owned(),
            });
        }
        args.push("--via-replication".to_owned());
    }
    if let Some(staging) = &spec.staging {
        // Relay logs on their own volume, not the database's: the server reads them there.
        volumes.push(Volume {
            name: "staging".to_owned(),
            empty_dir: staging
                .storage_class_name
                .is_none()
                .then(|| EmptyDirVolumeSource {
                    size_limit: Some(Quantity(staging.size.clone())),
                    ..EmptyDirVolumeSource::default()
                }),
            ephemeral: staging.storage_class_name.as_ref().map(|class| {
                k8s_openapi::api::core::v1::EphemeralVolumeSource {
                    volume_claim_template: Some(
                        k8s_openapi::api::core::v1::PersistentVolumeClaimTemplate {
                            metadata: None,
                            spec: claim_spec(&staging.size, Some(class.clone())),
                        },
                    ),
                }
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "staging".to_owned(),
            mount_path: "/staging".to_owned(),
            ..VolumeMount::default()
        });
        args.push("--mysqld-arg=--relay-log=/staging/relay-bin".to_owned());
    }
    volumes.append(&mut files.volumes);
    mounts.append(&mut files.mounts);
    let labels = labels(&name, "restore");
    let copy_binlogd = Container {
        name: "binlogd".to_owned(),
        image: Some(binlogd_image.to_owned()),
        command: Some(vec![
            "cp".to_owned(),
            "/usr/local/bin/binlogd".to_owned(),
            format!("{BINLOGD_BIN_DIR}/binlogd"),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "binlogd-bin".to_owned(),
            mount_path: BINLOGD_BIN_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let restore_container = Container {
        name: "restore".to_owned(),
        image: Some(database.image.clone()),
        command: Some(vec![format!("{BINLOGD_BIN_DIR}/binlogd")]),
        args: Some(args),
        // binlogd's last lines become the termination message the operator reports.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        env: (!env.is_empty()).then_some(env),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    // The database's own user, never root: what the server would run as anyway, and
    // the owner of the datadir. The pod talks to no API server: no token is mounted.
    let pod_security = PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(database.run_as_user),
        run_as_group: Some(database.run_as_group),
        fs_group: Some(database.run_as_group),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    };
    let restore_container = Container {
        // The server writes its temporary files in the image's /tmp.
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(false),
            ..binlogd_container_security()
        }),
        ..restore_container
    };
    let copy_binlogd = Container {
        security_context: Some(binlogd_container_security()),
        ..copy_binlogd
    };
    Ok(job(
        ObjectMeta {
            name: Some(restore_job_name(&name)),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        // A failed restore is looked at, not retried on a half-replayed datadir.
        0,
        PodSpec {
            init_containers: Some(vec![copy_binlogd]),
            containers: vec![restore_container],
            // A service account only for the store's credentials (IAM roles for
            // service accounts): its token is what they are fetched with.
            automount_service_account_token: Some(storage.service_account_name.is_some()),
            service_account_name: storage.service_account_name.clone(),
            security_context: Some(pod_security),
            volumes: Some(volumes),
            ..PodSpec::default()
        },
    ))
}

/// The name of a PointInTimeRestore's Job.
pub fn restore_job_name(restore: &str) -> String {
    format!("{restore}-restore")
}

/// A Job that runs `pod` once (its pods labelled as the Job is), trying `backoff_limit`
/// more pods if one fails.
fn job(metadata: ObjectMeta, backoff_limit: i32, pod: PodSpec) -> Job {
    let labels = metadata.labels.clone();
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(backoff_limit),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    ..pod
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        ConfigMapKeyRef, DatabaseSpec, PointInTimeRestoreSpec, RetentionSpec, SourceSpec,
        SpoolSpec, StagingSpec, TlsSpec,
    };

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    fn storage() -> StorageSpec {
        StorageSpec {
            bucket: "backups".into(),
            prefix: "/db1/".into(),
            region: Some("eu-west-1".into()),
            endpoint: Some("http://minio:9000".into()),
            credentials_secret: Some(secret("s3", "credentials")),
            service_account_name: Some("binlogd".into()),
            sse_c_key_secret: Some(secret("keys", "sse-c")),
            compression: Compression::Zstd,
            checkpoint_interval_seconds: 1,
            retention: Some(RetentionSpec {
                max_age: "720h".into(),
                keep_after_gtid: Some("0-1-5000".into()),
            }),
        }
    }

    #[test]
    fn serve_runs_beside_the_stream_on_the_same_archive_with_only_the_secrets_it_needs() {
        let mut server = server();
        server.spec.serve = Some(crate::crd::ServeSpec {
            port: 3307,
            users_secret: secret("db1-replicas", "users"),
            tls_secret: Some("db1-serve-tls".into()),
            require_tls: true,
        });
        let set = binlog_server_statefulset(&server).expect("set");
        let pod = set.spec.template.spec.expect("pod");
        assert_eq!(pod.containers.len(), 2);
        let serve = &pod.containers[1];
        let args = serve.args.clone().expect("args");
        let after = |flag: &str| {
            let at = args
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag}"));
            args[at + 1].clone()
        };
        assert_eq!(args[0], "serve");
        assert_eq!(after("--archive"), "s3://backups/db1");
        assert_eq!(after("--listen"), "0.0.0.0:3307");
        assert_eq!(after("--users-file"), "/etc/binlogd/serve-users/users");
        assert_eq!(after("--tls-cert"), "/etc/binlogd/serve-tls-cert/tls.crt");
        assert_eq!(after("--tls-key"), "/etc/binlogd/serve-tls-key/tls.key");
        assert!(args.contains(&"--require-tls".to_owned()));
        // The store's credentials, not the source's password.
        let mounts: Vec<String> = serve
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect();
        assert!(mounts.contains(&"aws-credentials".to_owned()), "{mounts:?}");
        assert!(
            !mounts.contains(&"source-password".to_owned()),
            "{mounts:?}"
        );
        // Each volume once, though both containers mount the credentials.
        let volumes: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect();
        let mut unique = volumes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), volumes.len(), "{volumes:?}");
        // The Service exposes the port replicas connect to.
        let service = binlog_server_service(&server).expect("service");
        let ports = service.spec.expect("spec").ports.expect("ports");
        assert!(
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some("replication") && p.port == 3307)
        );
        // Without spec.serve, neither.
        let plain = binlog_server_statefulset(&self::server()).expect("set");
        assert_eq!(plain.spec.template.spec.expect("pod").containers.len(), 1);
    }

    #[test]
    fn a_ca_given_without_a_mode_is_checked_against() {
        let tls_mode = |tls: TlsSpec| -> String {
            let mut server = server();
            server.spec.source.tls = Some(tls);
            let set = binlog_server_statefulset(&server).expect("set");
            let pod = set.spec.template.spec.expect("pod");
            let args = pod.containers[0].args.clone().expect("args");
            let at = args
                .iter()
                .position(|a| a == "--tls-mode")
                .expect("--tls-mode");
            args[at + 1].clone()
        };
        let ca = Some(secret("db1-ca", "ca.crt"));
        assert_eq!(
            tls_mode(TlsSpec {
                mode: None,
                ca_secret: ca.clone()
            }),
            "verify-ca"
        );
        assert_eq!(
            tls_mode(TlsSpec {
                mode: None,
                ca_secret: None
            }),
            "preferred"
        );
        assert_eq!(
            tls_mode(TlsSpec {
                mode: Some(TlsMode::Required),
                ca_secret: ca
            }),
            "required",
            "a mode given is kept"
        );
    }

    fn stored<K: Resource<DynamicType = ()>>(mut resource: K, name: &str) -> K {
        let meta = resource.meta_mut();
        meta.name = Some(name.into());
        meta.namespace = Some("prod".into());
        meta.uid = Some("0c9d-uid".into());
        resource
    }

    fn server() -> BinlogServer {
        stored(
            BinlogServer::new(
                "db1",
                BinlogServerSpec {
                    source: SourceSpec {
                        host: "db1-primary".into(),
                        port: 3306,
                        user: "repl".into(),
                        password_secret: secret("db1-repl", "password"),
                        tls: Some(TlsSpec {
                            mode: Some(TlsMode::VerifyIdentity),
                            ca_secret: Some(secret("db1-ca", "ca.crt")),
                        }),
                        server_id: Some(4242),
                    },
                    storage: storage(),
                    semi_sync: true,
                    spool: Some(SpoolSpec {
                        size: "50Gi".into(),
                        storage_class_name: Some("fast".into()),
                    }),
                    image: None,
                    resources: None,
                    node_selector: None,
                    tolerations: None,
                    serve: None,
                    monitoring: None,
                },
            ),
            "db1",
        )
    }

    /// Not root, its volumes and Secret files given to binlogd's group (else the image's
    /// user could read neither the 0400 Secrets nor write a fresh claim), no privileges.
    fn assert_runs_as_binlogd(pod: &PodSpec) {
        let security = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(65532));
        assert_eq!(security.fs_group, Some(65532));
        let container = pod.containers[0]
            .security_context
            .as_ref()
            .expect("container security context");
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(
            container.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_binlog_server_runs_binlogd_stream_with_secrets_as_files() {
        let set = binlog_server_statefulset(&server()).expect("statefulset");
        assert_eq!(set.metadata.name.as_deref(), Some("db1"));
        assert_eq!(set.metadata.namespace.as_deref(), Some("prod"));
        let owner = &set.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("BinlogServer", "db1", Some(true))
        );
        let spec = set.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("db1"));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.service_account_name.as_deref(), Some("binlogd"));
        assert_runs_as_binlogd(&pod);
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some(DEFAULT_IMAGE));
        assert_eq!(
            container.args.as_deref().expect("args"),
            strings(&[
                "stream",
                "--source",
                "mysql://repl@db1-primary:3306",
                "--password-file",
                "/etc/binlogd/source/password",
                "--archive",
                "s3://backups/db1",
                "--s3-region",
                "eu-west-1",
                "--s3-endpoint",
                "http://minio:9000",
                "--sse-c-key-file",
                "/etc/binlogd/sse-c/key",
                "--spool-dir",
                "/var/lib/binlogd/spool",
                "--metrics-addr",
                "0.0.0.0:9606",
                "--log-format",
                "json",
                "--no-progress",
                "--compression",
                "zstd",
                "--checkpoint-interval",
                "1",
                "--retention",
                "720h",
                "--keep-after-gtid",
                "0-1-5000",
                "--tls-mode",
                "verify-identity",
                "--tls-ca",
                "/etc/binlogd/tls/ca.pem",
                "--server-id",
                "4242",
                "--semi-sync",
            ])
        );
        // Secrets are files: the only variable names the credentials file, and no
        // variable takes anything from a Secret.
        let env = container.env.as_ref().expect("env");
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, "AWS_SHARED_CREDENTIALS_FILE");
        assert_eq!(
            env[0].value.as_deref(),
            Some("/etc/binlogd/aws/credentials")
        );
        assert!(env.iter().all(|e| e.value_from.is_none()));
        let volumes = pod.volumes.expect("volumes");
        let secret_volumes: Vec<(String, String, String, i32)> = volumes
            .iter()
            .filter_map(|v| {
                let s = v.secret.as_ref()?;
                let item = &s.items.as_ref()?[0];
                Some((
                    s.secret_name.clone()?,
                    item.key.clone(),
                    item.path.clone(),
                    s.default_mode?,
                ))
            })
            .collect();
        assert_eq!(
            secret_volumes,
            [
                (
                    "db1-repl".into(),
                    "password".into(),
                    "password".into(),
                    0o400
                ),
                (
                    "s3".into(),
                    "credentials".into(),
                    "credentials".into(),
                    0o400
                ),
                ("keys".into(), "sse-c".into(), "key".into(), 0o400),
                ("db1-ca".into(), "ca.crt".into(), "ca.pem".into(), 0o400),
            ]
        );
        let mounts = container.volume_mounts.as_ref().expect("mounts");
        assert_eq!(mounts[0].mount_path, "/var/lib/binlogd");
        assert!(mounts[1..].iter().all(|m| m.read_only == Some(true)));
        for probe in [&container.readiness_probe, &container.liveness_probe] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("probe");
            assert_eq!(get.path.as_deref(), Some("/healthz"));
            assert_eq!(get.port, IntOrString::String("metrics".into()));
        }
        let claim = &spec.volume_claim_templates.expect("claims")[0];
        let claim_spec = claim.spec.as_ref().expect("claim spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage")),
            Some(&Quantity("50Gi".into()))
        );
    }

    #[test]
    fn a_deleted_servers_spool_is_uploaded_by_binlogd_upload_on_its_claim() {
        let job = spool_upload_job(&server()).expect("job");
        assert_eq!(job.metadata.name.as_deref(), Some("db1-upload-spool"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("prod"));
        assert!(job.metadata.owner_references.is_none());
        let spec = job.spec.expect("spec");
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("binlogd"));
        assert_runs_as_binlogd(&pod);
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some(DEFAULT_IMAGE));
        assert_eq!(
            container.args.as_deref().expect("args"),
            strings(&[
                "upload",
                "--log-format",
                "json",
                "--spool-dir",
                "/var/lib/binlogd/spool",
                "--archive",
                "s3://backups/db1",
                "--s3-region",
                "eu-west-1",
                "--s3-endpoint",
                "http://minio:9000",
                "--sse-c-key-file",
                "/etc/binlogd/sse-c/key",
                "--compression",
                "zstd",
            ])
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let env = container.env.as_ref().expect("env");
        assert!(env.iter().all(|e| e.value_from.is_none()), "{env:?}");
        let volumes = pod.volumes.expect("volumes");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("spool-db1-0"),
            "the claim the StatefulSet made from its spool template"
        );
        let secrets: Vec<&str> = volumes
            .iter()
            .filter_map(|v| v.secret.as_ref()?.secret_name.as_deref())
            .collect();
        assert_eq!(
            secrets,
            ["s3", "keys"],
            "no source password: it does not stream"
        );
        let mounts = container.volume_mounts.as_ref().expect("mounts");
        assert_eq!(
            (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
            ("spool", "/var/lib/binlogd")
        );
        assert!(mounts[1..].iter().all(|m| m.read_only == Some(true)));
        let set = binlog_server_statefulset(&server()).expect("statefulset");
        let template = &set.spec.volume_claim_templates.expect("claims")[0];
        assert_eq!(
            format!("{}-db1-0", template.metadata.name.as_deref().expect("name")),
            spool_claim_name("db1")
        );
    }

    #[test]
    fn the_service_is_headless_and_exposes_metrics() {
        let service = binlog_server_service(&server()).expect("service");
        let spec = service.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.selector, Some(labels("db1", "stream")));
        let port = &spec.ports.expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 9606));
    }

    fn restore(target: RestoreTarget) -> PointInTimeRestore {
        stored(
            PointInTimeRestore::new(
                "undo-drop",
                PointInTimeRestoreSpec {
                    binlog_server_ref: Some("db1".into()),
                    storage: None,
                    target,
                    strict: true,
                    database: DatabaseSpec {
                        pvc_name: "data-db1-0".into(),
                        sub_path: Some("mysql".into()),
                        image: "mariadb:10.11".into(),
                        config: Some(ConfigMapKeyRef {
                            name: "db1-config".into(),
                            key: "my.cnf".into(),
                        }),
                        from_gtid: None,
                        run_as_user: 999,
                        run_as_group: 999,
                    },
                    parallel_workers: Some(4),
                    staging: Some(StagingSpec {
                        size: "50Gi".into(),
                        storage_class_name: None,
                    }),
                    method: RestoreMethod::RelayLogs,
                    resources: None,
                },
            ),
            "undo-drop",
        )
    }

    #[test]
    fn a_restore_runs_binlogd_restore_in_the_database_image_on_its_volume() {
        let target = RestoreTarget {
            before_gtid: Some("0-1-7342".into()),
            ..RestoreTarget::default()
        };
        let job = restore_job(&restore(target), &storage(), "binlogd:test").expect("job");
        assert_eq!(job.metadata.name.as_deref(), Some("undo-drop-restore"));
        let spec = job.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let init = &pod.init_containers.as_ref().expect("init")[0];
        assert_eq!(init.image.as_deref(), Some("binlogd:test"));
        assert_eq!(
            init.command.as_deref().expect("command"),
            strings(&["cp", "/usr/local/bin/binlogd", "/binlogd-bin/binlogd"])
        );
        // As the database's own user, without privileges or an API token.
        let security = pod.security_context.as_ref().expect("pod security");
        assert_eq!(
            (
                security.run_as_non_root,
                security.run_as_user,
                security.run_as_group,
                security.fs_group
            ),
            (Some(true), Some(999), Some(999), Some(999))
        );
        // The store's credentials come with the service account's token here.
        assert_eq!(pod.service_account_name.as_deref(), Some("binlogd"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        let mut without = storage();
        without.service_account_name = None;
        let latest = RestoreTarget {
            latest: true,
            ..RestoreTarget::default()
        };
        let other = restore_job(&restore(latest), &without, "binlogd:test").expect("job");
        let other_pod = other.spec.expect("spec").template.spec.expect("pod");
        assert_eq!(other_pod.automount_service_account_token, Some(false));
        for container in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let security = container.security_context.as_ref().expect("security");
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(
                security.capabilities.as_ref().and_then(|c| c.drop.clone()),
                Some(vec!["ALL".to_owned()])
            );
        }
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("mariadb:10.11"));
        assert_eq!(
            container.command.as_deref().expect("command"),
            strings(&["/binlogd-bin/binlogd"])
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            container.args.as_deref().expect("args"),
            strings(&[
                "restore",
                "--log-format",
                "json",
                "--archive",
                "s3://backups/db1",
                "--s3-region",
                "eu-west-1",
                "--s3-endpoint",
                "http://minio:9000",
                "--sse-c-key-file",
                "/etc/binlogd/sse-c/key",
                "--datadir",
                "/var/lib/mysql/mysql",
                "--from-backup",
                "/var/lib/mysql/mysql",
                "--before-gtid",
                "0-1-7342",
                "--strict",
                "--parallel-workers",
                "4",
                "--defaults-file",
                "/etc/binlogd/database/my.cnf",
                "--mysqld-arg=--relay-log=/staging/relay-bin",
            ])
        );
        let volumes = pod.volumes.expect("volumes");
        let claim = volumes
            .iter()
            .find_map(|v| v.persistent_volume_claim.as_ref())
            .expect("the database's claim");
        assert_eq!(claim.claim_name, "data-db1-0");
        let staging = volumes
            .iter()
            .find(|v| v.name == "staging")
            .expect("staging");
        assert_eq!(
            staging
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.clone()),
            Some(Quantity("50Gi".into()))
        );
        let mounts: Vec<&str> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            mounts,
            [
                "/var/lib/mysql",
                "/binlogd-bin",
                "/etc/binlogd/database",
                "/staging",
                "/etc/binlogd/aws",
                "/etc/binlogd/sse-c"
            ]
        );
    }

    #[test]
    fn a_restore_by_replication_runs_binlogd_restore_via_replication_and_stages_nothing() {
        let mut by_replication = restore(RestoreTarget {
            latest: true,
            ..RestoreTarget::default()
        });
        by_replication.spec.method = RestoreMethod::Replication;
        let err = restore_job(&by_replication, &storage(), "binlogd:test").expect_err("staging");
        assert!(
            matches!(
                &err,
                WorkloadError::Invalid {
                    field: "spec.staging",
                    ..
                }
            ),
            "{err}"
        );
        by_replication.spec.staging = None;
        let job = restore_job(&by_replication, &storage(), "binlogd:test").expect("job");
        let pod = job.spec.expect("spec").template.spec.expect("pod");
        let args = pod.containers[0].args.clone().expect("args");
        assert!(args.contains(&"--via-replication".to_owned()), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("relay-log")), "{args:?}");
        let yaml = serde_json::to_value(&by_replication.spec).expect("json");
        assert_eq!(yaml["method"], "replication");
        let default = serde_json::to_value(&restore(RestoreTarget::default()).spec).expect("json");
        assert!(
            default.get("method").is_none(),
            "the default is not written"
        );
    }

    #[test]
    fn a_restore_names_exactly_one_target() {
        for target in [
            RestoreTarget::default(),
            RestoreTarget {
                time: Some("2026-11-23T09:59:59Z".into()),
                latest: true,
                ..RestoreTarget::default()
            },
        ] {
            let err =
                restore_job(&restore(target), &storage(), "binlogd:test").expect_err("refused");
            assert!(
                matches!(
                    &err,
                    WorkloadError::Invalid {
                        field: "spec.target",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn only_a_stored_resource_owns_workloads() {
        let mut server = server();
        server.metadata.uid = None;
        assert_eq!(
            binlog_server_statefulset(&server).expect_err("no uid"),
            WorkloadError::NotStored("BinlogServer")
        );
    }
}
