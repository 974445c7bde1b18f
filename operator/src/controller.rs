//! The reconcilers: what the operator does each time a resource, or a workload it owns,
//! changes.
//!
//! - [`reconcile_binlog_server`] applies the Service and StatefulSet (server-side apply, so a
//!   spec change rolls the pod and nothing else is touched), and reports readiness in the
//!   status. Deleting the BinlogServer deletes them too (they carry its owner reference);
//!   its finalizer holds the deletion until the spool volume, which the StatefulSet leaves
//!   behind, has been uploaded by a `binlogd upload` Job and deleted.
//! - [`reconcile_restore`] finds the archive (inline, or the named BinlogServer's), refuses
//!   to start while a pod still mounts the database's claim (or another restore's unfinished
//!   Job is about to), creates the restore Job once,
//!   and follows it to `Succeeded` or `Failed`, with the failing container's last words
//!   (its termination message) in the status and an Event for each step.

use crate::crd::{
    BinlogServer, BinlogServerStatus, PointInTimeRestore, PointInTimeRestoreStatus, RestorePhase,
    RestoreTarget, StorageSpec,
};
use crate::status::{read_metrics, read_restore_log, read_serve_metrics};
use crate::workloads::{
    METRICS_PORT, SERVE_METRICS_PORT, WorkloadError, archive_url, binlog_server_service,
    binlog_server_service_monitor, binlog_server_statefulset, restore_job, restore_job_name,
    service_monitor_resource, spool_claim_name, spool_upload_job, spool_upload_job_name,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "binlogd-operator";

/// What the reconcilers share.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on the resources.
    pub recorder: Recorder,
    /// The binlogd image restore Jobs copy the binary from.
    pub binlogd_image: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("binlogd_image", &self.binlogd_image)
            .finish_non_exhaustive()
    }
}

/// What a failed reconcile does: say so, and try again in a while (the API server may be
/// back, or the user may have fixed the spec).
pub fn retry_later<K>(_resource: Arc<K>, error: &ControllerError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, "reconcile failed; retrying in 30 s");
    Action::requeue(Duration::from_secs(30))
}

/// Runs both controllers until the process is stopped: BinlogServers (and the
/// StatefulSets they own) and PointInTimeRestores (and their Jobs), in every namespace.
pub async fn run(ctx: Arc<Context>) {
    use futures_util::StreamExt;
    use kube::runtime::{Controller, watcher};
    let client = ctx.client.clone();
    let servers = Controller::new(
        Api::<BinlogServer>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(reconcile_binlog_server, retry_later, ctx.clone())
    .for_each(|outcome| async move {
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "BinlogServer controller");
        }
    });
    let restores = Controller::new(
        Api::<PointInTimeRestore>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .shutdown_on_signal()
    .run(reconcile_restore, retry_later, ctx)
    .for_each(|outcome| async move {
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "PointInTimeRestore controller");
        }
    });
    futures_util::join!(servers, restores);
}

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {}", describe_kube_error(.0))]
    Kube(#[from] kube::Error),
    /// A resource could not be turned into workloads.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// `spec.monitoring` asks for a ServiceMonitor in a cluster that has no such kind.
    #[error(
        "spec.monitoring asks for a ServiceMonitor, but the cluster has no \
         monitoring.coreos.com/v1 ServiceMonitor kind: install the Prometheus Operator (or \
         its CRDs), or remove spec.monitoring and scrape port 9606 another way"
    )]
    NoServiceMonitorKind,
}

/// The API server's own words for a refusal (kube's Display adds a debug dump of them).
fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

impl ControllerError {
    /// The Event and condition reason for this failure.
    fn reason(&self) -> &'static str {
        match self {
            ControllerError::Kube(_) => "ApplyFailed",
            ControllerError::Workload(_) => "InvalidSpec",
            ControllerError::NoServiceMonitorKind => "NoServiceMonitorKind",
        }
    }
}

fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// Brings a BinlogServer's Service and StatefulSet to its spec and reports readiness. A
/// failure is also told where `kubectl describe` shows it: a Warning Event, and the Ready
/// condition false with the reason.
pub async fn reconcile_binlog_server(
    server: Arc<BinlogServer>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let outcome = apply_binlog_server(&server, &ctx).await;
    if let Err(err) = &outcome {
        report_server_failure(&ctx, &server, err).await;
    }
    outcome
}

/// Best effort: the API server may be what failed.
async fn report_server_failure(ctx: &Context, server: &BinlogServer, err: &ControllerError) {
    let message = err.to_string();
    publish(
        ctx,
        &server.object_ref(&()),
        EventType::Warning,
        err.reason(),
        &message,
    )
    .await;
    let generation = server.metadata.generation;
    let mut conditions: Vec<Condition> = server
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().cloned())
        .filter(|c| c.type_ != "Ready")
        .collect();
    conditions.insert(
        0,
        condition("Ready", false, err.reason(), message, generation),
    );
    let status = serde_json::json!({"conditions": conditions, "observedGeneration": generation});
    if let Err(e) = merge_status(ctx, server, status).await {
        tracing::warn!(error = %e, "could not write the failure into the status");
    }
}

async fn apply_binlog_server(
    server: &BinlogServer,
    ctx: &Context,
) -> Result<Action, ControllerError> {
    let namespace = server.namespace().unwrap_or_else(|| "default".into());
    let name = server.name_any();
    if server.metadata.deletion_timestamp.is_some() {
        return finish_deletion(server, ctx, &namespace, &name).await;
    }
    if !holds_spool_finalizer(server) {
        // Before the StatefulSet, and so before there is a spool to lose.
        let mut finalizers = server.metadata.finalizers.clone().unwrap_or_default();
        finalizers.push(SPOOL_FINALIZER.to_owned());
        set_finalizers(ctx, server, &namespace, finalizers).await?;
    }
    let apply = PatchParams::apply(MANAGER).force();
    let service = binlog_server_service(server)?;
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply, &Patch::Apply(&service))
        .await?;
    apply_service_monitor(server, ctx, &namespace, &name).await?;
    let set = binlog_server_statefulset(server)?;
    let set = Api::<StatefulSet>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply, &Patch::Apply(&set))
        .await?;
    let ready = set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        >= 1;
    let mut status = binlog_server_status(ctx, server, &namespace, &name, ready).await;
    status.replicas = if server.spec.serve.is_some() && ready {
        // Kept as last seen when the page cannot be read this time.
        served_replicas(ctx, &namespace, &name)
            .await
            .unwrap_or_else(|| status.replicas.clone())
    } else {
        Vec::new()
    };
    merge_status(ctx, server, &status).await?;
    Ok(Action::requeue(Duration::from_secs(if ready {
        60
    } else {
        10
    })))
}

/// Keeps the ServiceMonitor `spec.monitoring` asks for, and deletes one it no longer
/// asks for (a 404 there is the usual case: there was none, or the Prometheus Operator
/// is not installed).
async fn apply_service_monitor(
    server: &BinlogServer,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), ControllerError> {
    let resource = service_monitor_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    match binlog_server_service_monitor(server)? {
        Some(monitor) => match api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&monitor),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(ControllerError::NoServiceMonitorKind)
            }
            Err(e) => Err(e.into()),
        },
        None => match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// The replicas `binlogd serve` is sending the archive to, from its `/metrics` (through the
/// pod proxy, as the stream's); `None` when the page cannot be read.
async fn served_replicas(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Option<Vec<crate::crd::ServedReplica>> {
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{namespace}/pods/{name}-0:{SERVE_METRICS_PORT}/proxy/metrics"
    ))
    .body(Vec::new())
    .ok()?;
    match ctx.client.request_text(request).await {
        Ok(text) => Some(read_serve_metrics(&text)),
        Err(err) => {
            tracing::warn!(error = %err, server = %name, "could not read binlogd serve's metrics");
            None
        }
    }
}

/// The status: readiness from the StatefulSet; when ready, the rest from binlogd's own
/// account (`/metrics`, through the API server's pod proxy).
async fn binlog_server_status(
    ctx: &Context,
    server: &BinlogServer,
    namespace: &str,
    name: &str,
    ready: bool,
) -> BinlogServerStatus {
    let generation = server.metadata.generation;
    let mut status = BinlogServerStatus {
        observed_generation: generation,
        ..server.status.clone().unwrap_or_default()
    };
    status.conditions = vec![if ready {
        condition(
            "Ready",
            true,
            "PodReady",
            "binlogd is running".into(),
            generation,
        )
    } else {
        condition(
            "Ready",
            false,
            "PodNotReady",
            format!(
                "the pod of StatefulSet {name} is not ready yet (see kubectl describe pod {name}-0)"
            ),
            generation,
        )
    }];
    if !ready {
        return status;
    }
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{namespace}/pods/{name}-0:{METRICS_PORT}/proxy/metrics"
    ))
    .body(Vec::new());
    let text = match request {
        Ok(request) => ctx.client.request_text(request).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not build the metrics request");
            return status;
        }
    };
    let reading = match text {
        Ok(text) => read_metrics(&text),
        Err(err) => {
            tracing::warn!(error = %err, server = %name, "could not read binlogd's metrics");
            return status;
        }
    };
    if reading.last_gtid.is_some() {
        status.last_archived_gtid = reading.last_gtid.clone();
    }
    if let Some(time) = reading.last_commit_seconds.map(crate::status::commit_time) {
        // From a binlogd too old to say its recoverable time: with everything durable in
        // the store, the last archived commit is also the last one a restore can reach.
        if reading.upload_backlog_bytes == Some(0.0) {
            status.last_recoverable_time = Some(time.clone());
        }
        status.last_archived_time = Some(time);
    }
    if let Some(seconds) = reading.recoverable_until_seconds {
        status.last_recoverable_time = Some(crate::status::commit_time(seconds));
    }
    status.lag_seconds = reading.lag_seconds;
    if reading.source.is_some() {
        status.current_source = reading.source.clone();
    }
    let host = &server.spec.source.host;
    status.conditions.push(if reading.connected {
        condition(
            "Streaming",
            true,
            "Connected",
            format!("from {host}"),
            generation,
        )
    } else {
        condition(
            "Streaming",
            false,
            "SourceLost",
            format!("binlogd is not connected to {host}; it retries (see its log)"),
            generation,
        )
    });
    let backlog = reading.upload_backlog_bytes.unwrap_or(0.0);
    let keeping_up = backlog < STORAGE_BACKLOG_LIMIT;
    status.conditions.push(condition(
        "StorageReady",
        keeping_up,
        if keeping_up { "Uploading" } else { "Backlog" },
        format!("{backlog:.0} bytes durable in the spool and not yet in the store"),
        generation,
    ));
    status
}

/// Holds a BinlogServer's deletion until what its spool held is in the store.
pub const SPOOL_FINALIZER: &str = "binlogd.io/upload-spool";

fn holds_spool_finalizer(server: &BinlogServer) -> bool {
    server
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == SPOOL_FINALIZER)
}

/// Writes the finalizer list, conditional on the resource version read: a list changed
/// meanwhile (another controller's finalizer) is a conflict, retried, never overwritten.
async fn set_finalizers(
    ctx: &Context,
    server: &BinlogServer,
    namespace: &str,
    finalizers: Vec<String>,
) -> Result<(), ControllerError> {
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": server.metadata.resource_version,
        }
    });
    Api::<BinlogServer>::namespaced(ctx.client.clone(), namespace)
        .patch(
            &server.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}

/// A deleted BinlogServer's last steps, one per reconcile: stop its pod (binlogd uploads
/// on SIGTERM); run `binlogd upload` on the spool left behind; once that Job succeeds,
/// delete the spool's claim and the Job, and let the BinlogServer go. The StatefulSet and
/// Service go with it (owner references). If the upload fails, the claim is kept and the
/// status and a Warning say what to do.
async fn finish_deletion(
    server: &BinlogServer,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Action, ControllerError> {
    if !holds_spool_finalizer(server) {
        return Ok(Action::await_change());
    }
    let reference = server.object_ref(&());
    let pod = format!("{name}-0");
    if Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&pod)
        .await?
        .is_some()
    {
        let stop = Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
            )
            .await;
        ignore_not_found(stop)?;
        deletion_status(
            ctx,
            server,
            "Stopping",
            format!("deleting: binlogd in pod {pod} stops and uploads what its spool holds"),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace);
    let claim = spool_claim_name(name);
    if claims.get_opt(&claim).await?.is_none() {
        return release(ctx, server, namespace).await;
    }
    let archive = archive_url(&server.spec.storage);
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), namespace);
    let job_name = spool_upload_job_name(name);
    let Some(job) = jobs.get_opt(&job_name).await? else {
        jobs.create(&PostParams::default(), &spool_upload_job(server)?)
            .await?;
        let message = format!(
            "deleting: Job {job_name} uploads what PersistentVolumeClaim {claim} holds to \
             {archive}; the claim is deleted after"
        );
        publish(
            ctx,
            &reference,
            EventType::Normal,
            "UploadingSpool",
            &message,
        )
        .await;
        deletion_status(ctx, server, "UploadingSpool", message).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let status = job.status.unwrap_or_default();
    if status.succeeded.unwrap_or(0) >= 1 {
        ignore_not_found(claims.delete(&claim, &DeleteParams::default()).await)?;
        ignore_not_found(jobs.delete(&job_name, &DeleteParams::background()).await)?;
        publish(
            ctx,
            &reference,
            EventType::Normal,
            "SpoolUploaded",
            &format!(
                "everything PersistentVolumeClaim {claim} held is in {archive}; deleted the claim"
            ),
        )
        .await;
        return release(ctx, server, namespace).await;
    }
    // Failed for good (its retries spent), not just one pod down with another coming.
    let failed = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Failed" && c.status == "True");
    if failed {
        let pod = Api::<Pod>::namespaced(ctx.client.clone(), namespace)
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await?
            .items
            .into_iter()
            .next();
        let words = pod
            .as_ref()
            .and_then(|pod| last_words(pod, "upload"))
            .unwrap_or_else(|| format!("see kubectl logs job/{job_name}"));
        let message = format!(
            "Job {job_name} could not upload the spool: {words}. PersistentVolumeClaim {claim} \
             keeps it. Fix the storage and delete Job {job_name} to try again, or remove the \
             finalizer {SPOOL_FINALIZER} from BinlogServer {name} to give the spool up"
        );
        publish(
            ctx,
            &reference,
            EventType::Warning,
            "SpoolNotUploaded",
            &message,
        )
        .await;
        deletion_status(ctx, server, "SpoolNotUploaded", message).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    Ok(Action::requeue(Duration::from_secs(10)))
}

/// Removes the spool finalizer: the API server then deletes the BinlogServer.
async fn release(
    ctx: &Context,
    server: &BinlogServer,
    namespace: &str,
) -> Result<Action, ControllerError> {
    let rest = server
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != SPOOL_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, server, namespace, rest).await?;
    Ok(Action::await_change())
}

/// The Ready condition of a BinlogServer on its way out.
async fn deletion_status(
    ctx: &Context,
    server: &BinlogServer,
    reason: &str,
    message: String,
) -> Result<(), ControllerError> {
    let ready = condition("Ready", false, reason, message, server.metadata.generation);
    merge_status(ctx, server, serde_json::json!({"conditions": [ready]})).await?;
    Ok(())
}

/// A delete, or a patch, of what may be gone already.
fn ignore_not_found<T>(outcome: Result<T, kube::Error>) -> Result<(), ControllerError> {
    match outcome {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Spool bytes not yet in the store above which StorageReady turns false: a minute of a
/// busy primary's binlog, more than a healthy checkpoint beat ever leaves behind.
const STORAGE_BACKLOG_LIMIT: f64 = 64.0 * 1024.0 * 1024.0;

/// The target in words, as the TARGET column shows it.
fn describe_target(target: &RestoreTarget) -> String {
    if let Some(time) = &target.time {
        format!("time {time}")
    } else if let Some(gtid) = &target.before_gtid {
        format!("before {gtid}")
    } else if let Some(gtid) = &target.to_gtid {
        format!("gtid {gtid}")
    } else {
        "latest".into()
    }
}

/// Moves a PointInTimeRestore along: archive, claim free, Job, outcome. A failure the
/// next attempt may get past (the API server refused) is told in a Warning Event and the
/// status message; one it cannot (the spec is impossible) fails the restore.
pub async fn reconcile_restore(
    restore: Arc<PointInTimeRestore>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let outcome = advance_restore(&restore, &ctx).await;
    if let Err(err) = &outcome {
        report_restore_failure(&ctx, &restore, err).await;
    }
    outcome
}

/// Best effort, like [`report_server_failure`].
async fn report_restore_failure(
    ctx: &Context,
    restore: &PointInTimeRestore,
    err: &ControllerError,
) {
    let message = format!("{err}; retrying in 30 s");
    publish(
        ctx,
        &restore.object_ref(&()),
        EventType::Warning,
        err.reason(),
        &message,
    )
    .await;
    if let Err(e) = merge_status(ctx, restore, serde_json::json!({ "message": message })).await {
        tracing::warn!(error = %e, "could not write the failure into the status");
    }
}

async fn advance_restore(
    restore: &PointInTimeRestore,
    ctx: &Context,
) -> Result<Action, ControllerError> {
    let status = restore.status.clone().unwrap_or_default();
    if matches!(
        status.phase,
        Some(RestorePhase::Succeeded | RestorePhase::Failed)
    ) {
        return Ok(Action::await_change());
    }
    let namespace = restore.namespace().unwrap_or_else(|| "default".into());
    let name = restore.name_any();
    let spec = &restore.spec;
    let reference = restore.object_ref(&());
    let mut next = PointInTimeRestoreStatus {
        target: Some(describe_target(&spec.target)),
        observed_generation: restore.metadata.generation,
        ..status
    };

    let storage: StorageSpec = match (&spec.storage, &spec.binlog_server_ref) {
        (Some(storage), _) => storage.clone(),
        (None, Some(server)) => {
            match Api::<BinlogServer>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(server)
                .await?
            {
                Some(server) => server.spec.storage,
                None => {
                    return fail(
                        ctx,
                        restore,
                        next,
                        format!("BinlogServer {server} does not exist in {namespace}: fix spec.binlogServerRef"),
                    )
                    .await;
                }
            }
        }
        (None, None) => {
            return fail(
                ctx,
                restore,
                next,
                "name the archive: spec.binlogServerRef or spec.storage".into(),
            )
            .await;
        }
    };

    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    let job_name = restore_job_name(&name);
    let job = match jobs.get_opt(&job_name).await? {
        Some(job) => job,
        None => {
            // The server in the Job must be the only one on the datadir.
            let claim = &spec.database.pvc_name;
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
                .list(&ListParams::default())
                .await?;
            let users: Vec<String> = pods
                .items
                .iter()
                .filter(|pod| {
                    let finished = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
                    let mounts = pod
                        .spec
                        .iter()
                        .flat_map(|s| s.volumes.iter().flatten())
                        .any(|v| {
                            v.persistent_volume_claim
                                .as_ref()
                                .is_some_and(|c| &c.claim_name == claim)
                        });
                    !finished && mounts
                })
                .map(|pod| pod.name_any())
                .collect();
            // Another restore of the same claim whose Job has no pod yet (or no longer
            // one, and has not finished): two replays on one datadir must not run.
            let restores = jobs
                .list(&ListParams::default().labels("app.kubernetes.io/component=restore"))
                .await?;
            let other_restores: Vec<String> = restores
                .items
                .iter()
                .filter(|job| job.name_any() != job_name)
                .filter(|job| {
                    let status = job.status.clone().unwrap_or_default();
                    status.succeeded.unwrap_or(0) == 0 && status.failed.unwrap_or(0) == 0
                })
                .filter(|job| {
                    job.spec
                        .iter()
                        .flat_map(|spec| spec.template.spec.iter())
                        .flat_map(|pod| pod.volumes.iter().flatten())
                        .any(|v| {
                            v.persistent_volume_claim
                                .as_ref()
                                .is_some_and(|c| &c.claim_name == claim)
                        })
                })
                .map(|job| job.name_any())
                .collect();
            if !users.is_empty() || !other_restores.is_empty() {
                let message = if users.is_empty() {
                    format!(
                        "waiting: restore Job {} has not finished with PersistentVolumeClaim \
                         {claim}; this restore starts after it",
                        other_restores.join(", ")
                    )
                } else {
                    format!(
                        "waiting: pod {} still mounts PersistentVolumeClaim {claim}; stop the \
                         database (scale its StatefulSet to 0), then the restore starts",
                        users.join(", ")
                    )
                };
                publish(ctx, &reference, EventType::Warning, "ClaimInUse", &message).await;
                next.phase = Some(RestorePhase::Pending);
                next.message = Some(message);
                write_status(ctx, restore, &next).await?;
                return Ok(Action::requeue(Duration::from_secs(15)));
            }
            let job = match restore_job(restore, &storage, &ctx.binlogd_image) {
                Ok(job) => job,
                // Trying again cannot help: the spec must change.
                Err(err) => return fail(ctx, restore, next, format!("{err}")).await,
            };
            jobs.create(&PostParams::default(), &job).await?;
            publish(
                ctx,
                &reference,
                EventType::Normal,
                "Started",
                &format!(
                    "Job {job_name} restores {claim} to {}",
                    describe_target(&spec.target)
                ),
            )
            .await;
            next.phase = Some(RestorePhase::Planning);
            next.message = Some(format!("Job {job_name} created"));
            write_status(ctx, restore, &next).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };

    // What binlogd's log says so far: the plan, the progress, where it got.
    let pod = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await?
        .items
        .into_iter()
        .next();
    let log_text = match &pod {
        Some(pod) => restore_container_log(ctx, &namespace, pod).await,
        None => String::new(),
    };
    let log = read_restore_log(&log_text);
    if let Some(plan) = &log.plan {
        if next.plan.is_none() {
            let note = format!(
                "{} transactions, {} bytes from {} archived files, to {}{}",
                plan.transactions,
                plan.bytes,
                plan.files,
                plan.target_gtid,
                plan.target_time
                    .as_ref()
                    .map_or(String::new(), |t| format!(" (committed {t})"))
            );
            publish(ctx, &reference, EventType::Normal, "Planned", &note).await;
        }
        next.plan = Some(plan.clone());
    }
    if let Some(progress) = log.progress() {
        next.progress = Some(progress);
    }
    if let Some((gtid, time)) = &log.reached {
        next.reached_gtid = Some(gtid.clone());
        next.reached_time = time.clone();
    }

    let job_status = job.status.unwrap_or_default();
    if job_status.succeeded.unwrap_or(0) >= 1 {
        let message = match (&log.short_of, &log.reached) {
            // Not what was asked: said as a warning of its own, with what was reached.
            (Some(asked), reached) => {
                let (gtid, time) = reached.clone().unwrap_or_default();
                let message = format!(
                    "restored to {gtid}{}, SHORT of the target {asked}: the archive ends there \
                     (strict is false)",
                    time.map_or(String::new(), |t| format!(" (committed {t})"))
                );
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    "ShortOfTarget",
                    &message,
                )
                .await;
                message
            }
            (None, _) => {
                let message = format!("restored to {}", describe_target(&spec.target));
                publish(ctx, &reference, EventType::Normal, "Applied", &message).await;
                message
            }
        };
        next.phase = Some(RestorePhase::Succeeded);
        next.progress = Some("100%".into());
        next.message = Some(message);
        write_status(ctx, restore, &next).await?;
        return Ok(Action::await_change());
    }
    if job_status.failed.unwrap_or(0) >= 1 {
        let words = pod.as_ref().and_then(|pod| last_words(pod, "restore"));
        // What to do next depends on whether the server began to replay.
        let advice = if !log_text.is_empty() && !log.staged {
            format!(
                "binlogd stopped before replaying anything, so {} is as it was: fix the cause, \
                 then delete this PointInTimeRestore and create it again",
                spec.database.pvc_name
            )
        } else {
            format!(
                "{} may hold part of the replay: restore it from the base backup again before \
                 a new PointInTimeRestore",
                spec.database.pvc_name
            )
        };
        return fail(
            ctx,
            restore,
            next,
            format!(
                "Job {job_name} failed: {}. {advice}",
                words.unwrap_or_else(|| format!("see kubectl logs job/{job_name}"))
            ),
        )
        .await;
    }
    next.phase = Some(if log.staged {
        RestorePhase::Applying
    } else if log.plan.is_some() {
        RestorePhase::Downloading
    } else {
        RestorePhase::Planning
    });
    next.message = Some(format!("Job {job_name} is running"));
    write_status(ctx, restore, &next).await?;
    Ok(Action::requeue(Duration::from_secs(10)))
}

/// The termination message of a Job pod's `container`: binlogd's last lines (the Job
/// asks for the log's tail when the container fails).
fn last_words(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == container)
        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .map(|m| m.trim().to_owned())
}

/// The restore container's log so far (empty while it has not started).
async fn restore_container_log(ctx: &Context, namespace: &str, pod: &Pod) -> String {
    let params = LogParams {
        container: Some("restore".to_owned()),
        ..LogParams::default()
    };
    Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .logs(&pod.name_any(), &params)
        .await
        .unwrap_or_else(|err| {
            tracing::debug!(error = %err, "no restore log yet");
            String::new()
        })
}

async fn fail(
    ctx: &Context,
    restore: &PointInTimeRestore,
    mut next: PointInTimeRestoreStatus,
    message: String,
) -> Result<Action, ControllerError> {
    publish(
        ctx,
        &restore.object_ref(&()),
        EventType::Warning,
        "Failed",
        &message,
    )
    .await;
    next.phase = Some(RestorePhase::Failed);
    next.message = Some(message);
    write_status(ctx, restore, &next).await?;
    Ok(Action::await_change())
}

async fn write_status(
    ctx: &Context,
    restore: &PointInTimeRestore,
    status: &PointInTimeRestoreStatus,
) -> Result<(), ControllerError> {
    merge_status(ctx, restore, status).await?;
    Ok(())
}

/// Merges `status` into the resource's status (fields it leaves out keep their values).
async fn merge_status<K>(
    ctx: &Context,
    resource: &K,
    status: impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(
        ctx.client.clone(),
        &resource.namespace().unwrap_or_else(|| "default".into()),
    )
    .patch_status(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Publishes an Event; failing to is logged, not fatal (the status says the same).
async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %err, reason, "could not publish an event");
    }
}
