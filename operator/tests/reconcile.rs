//! The reconcilers against a scripted API server: each test states, in order, every
//! request the reconciler must make, checks what it sends, and answers as the API server
//! would.

mod common;

use binlogd_operator::controller::{reconcile_binlog_server, reconcile_restore};
use binlogd_operator::crd::{BinlogServer, BinlogServerStatus, PointInTimeRestore};
use common::{ApiServer, SERVICE_MONITOR, context, no_service_monitor, not_found, restore, server};
use http::{Method, Response, StatusCode};
use kube::client::Body;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const SERVERS: &str = "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers";
const RESTORE_STATUS: &str =
    "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores/undo-drop/status";
const JOB: &str = "/apis/batch/v1/namespaces/prod/jobs/undo-drop-restore";
/// What a real `binlogd restore --datadir --log-format json` logged (testdata/README.md).
const RESTORE_LOG: &str = include_str!("../../testdata/binlogd-restore-log.jsonl");

fn log_path(pod: &str) -> String {
    format!("/api/v1/namespaces/prod/pods/{pod}/log")
}

/// The real log up to and including the line saying `message`.
fn log_until(message: &str) -> String {
    let mut kept = Vec::new();
    for line in RESTORE_LOG.lines() {
        kept.push(line);
        if line.contains(&format!("\"message\":\"{message}\"")) {
            break;
        }
    }
    kept.join("\n") + "\n"
}

/// Expects the restore's status patch; returns the status sent.
async fn restore_status(api: &mut ApiServer, restore: &PointInTimeRestore) -> serde_json::Value {
    api.expect_status(
        RESTORE_STATUS,
        &serde_json::to_value(restore).expect("json"),
    )
    .await
}

/// Expects the BinlogServer's status patch; returns the status sent.
async fn server_status(api: &mut ApiServer, server: &BinlogServer) -> serde_json::Value {
    api.expect_status(
        &format!("{SERVERS}/db1/status"),
        &serde_json::to_value(server).expect("json"),
    )
    .await
}

/// Expects a listing of the namespace's pods (`query`: its label selector, if any) and
/// answers with `items`.
async fn pods_listed(api: &mut ApiServer, query: &str, items: serde_json::Value) {
    api.expect(
        Method::GET,
        "/api/v1/namespaces/prod/pods",
        query,
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
    )
    .await;
}

/// The restore Jobs of the namespace, listed by their label.
async fn restore_jobs_listed(api: &mut ApiServer, items: serde_json::Value) {
    api.expect(
        Method::GET,
        "/apis/batch/v1/namespaces/prod/jobs",
        "labelSelector=app.kubernetes.io%2Fcomponent%3Drestore",
        StatusCode::OK,
        json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items}),
    )
    .await;
}

/// The Job's pod, listed by its label.
async fn job_pod(api: &mut ApiServer) {
    pods_listed(
        api,
        "labelSelector=job-name%3Dundo-drop-restore",
        json!([
            {"metadata": {"name": "undo-drop-restore-x1"}, "status": {"phase": "Running"}}]),
    )
    .await;
}

#[tokio::test]
async fn a_running_restore_reports_its_plan_phase_and_progress_from_the_log() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_job(&mut api, json!({"active": 1})).await;
    job_pod(&mut api).await;
    // The real log to the staging, then a progress line as binlogd writes one every 5 s
    // while the applier runs (the recorded restore was over sooner).
    let log = log_until("relay logs staged")
        + r#"{"timestamp":"2026-11-23T13:50:00.000000Z","level":"INFO","fields":{"message":"applying","applied":"0-1-150","done_bytes":42000,"total_bytes":100000,"file":"mariadb-bin.000007","position":1234},"target":"binlogd::restore"}"#
        + "\n";
    api.expect_text(
        Method::GET,
        &log_path("undo-drop-restore-x1"),
        "container=restore",
        &log,
    )
    .await;
    api.expect_event("Planned").await;
    let status = restore_status(&mut api, &restore).await;
    assert_eq!(status["phase"], "Applying");
    assert_eq!(status["progress"], "42%");
    assert!(
        status["plan"]["files"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_binlog_server_is_applied_and_its_readiness_reported() {
    applied_and_reported(false).await;
}

#[tokio::test]
async fn a_binlog_server_that_serves_replicas_reports_each_one() {
    applied_and_reported(true).await;
}

/// Reconciles a BinlogServer (with `spec.serve` when `serves`) whose pod is ready, and
/// checks the status made from binlogd's metrics.
async fn applied_and_reported(serves: bool) {
    let (ctx, mut api) = context();
    let mut server = server();
    if serves {
        server.spec.serve = Some(binlogd_operator::crd::ServeSpec {
            port: 3307,
            users_secret: binlogd_operator::crd::SecretKeyRef {
                name: "db1-replicas".into(),
                key: "users".into(),
            },
            tls_secret: None,
            require_tls: false,
        });
    }
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(server.clone()), ctx));
    let service = api
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/prod/services/db1",
            "fieldManager=binlogd-operator",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
        )
        .await;
    no_service_monitor(&mut api).await;
    assert_eq!(service["kind"], "Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    let set = api
        .expect(
            Method::PATCH,
            "/apis/apps/v1/namespaces/prod/statefulsets/db1",
            "force=true",
            StatusCode::OK,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "db1"},
                   "spec": {"selector": {}, "serviceName": "db1", "template": {}},
                   "status": {"replicas": 1, "readyReplicas": 1}}),
        )
        .await;
    assert_eq!(
        set["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "stream"
    );
    assert_eq!(set["metadata"]["ownerReferences"][0]["uid"], "db1-uid");
    // Ready: binlogd's metrics, read through the pod proxy (what a real binlogd served).
    let metrics = include_str!("../../testdata/binlogd-metrics.txt");
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), api.0.next_request())
        .await
        .expect("the metrics request")
        .expect("client");
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/prod/pods/db1-0:9606/proxy/metrics"
    );
    respond.send_response(
        Response::builder()
            .body(Body::from(metrics.as_bytes().to_vec()))
            .expect("response"),
    );
    if serves {
        // And binlogd serve's, beside it in the pod (what a real one served).
        let metrics = include_str!("../../testdata/binlogd-serve-metrics.txt");
        let (request, respond) = tokio::time::timeout(Duration::from_secs(5), api.0.next_request())
            .await
            .expect("the serve metrics request")
            .expect("client");
        assert_eq!(
            request.uri().path(),
            "/api/v1/namespaces/prod/pods/db1-0:9607/proxy/metrics"
        );
        respond.send_response(
            Response::builder()
                .body(Body::from(metrics.as_bytes().to_vec()))
                .expect("response"),
        );
    }
    let status = server_status(&mut api, &server).await;
    if serves {
        assert_eq!(status["replicas"][0]["serverId"], 2, "{status}");
        assert_eq!(status["replicas"][0]["file"], "mariadb-bin.000013");
        assert_eq!(status["replicas"][0]["sentBytes"], 818_696);
    } else {
        assert!(status.get("replicas").is_none(), "{status}");
    }
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][1]["type"], "Streaming");
    assert_eq!(status["conditions"][1]["status"], "True");
    assert_eq!(status["conditions"][2]["type"], "StorageReady");
    assert_eq!(status["lastArchivedGtid"], "0-1-5");
    assert_eq!(status["lastArchivedTime"], "2026-11-23T13:38:14Z");
    assert_eq!(status["lastRecoverableTime"], "2026-11-23T13:38:14Z");
    assert_eq!(status["lagSeconds"], 0.0);
    assert_eq!(
        status["currentSource"],
        "server 1 at 127.0.0.1:33999 (10.11.19-MariaDB-0+deb12u1-log)"
    );
    assert_eq!(status["observedGeneration"], 3);
    running.await.expect("task").expect("reconciled");
}

fn monitored() -> BinlogServer {
    let mut server = server();
    server.spec.monitoring = Some(binlogd_operator::crd::MonitoringSpec {
        interval: "15s".into(),
        labels: [("release".to_owned(), "kube-prometheus-stack".to_owned())].into(),
    });
    server
}

/// `spec.monitoring`: a ServiceMonitor that selects the server's Service, scrapes its
/// metrics port and labels the targets `job="binlogd"`, as deploy/monitoring's rules want.
#[tokio::test]
async fn a_monitored_binlog_server_gets_a_service_monitor() {
    let (ctx, mut api) = context();
    let server = monitored();
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(server.clone()), ctx));
    let service = api
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/prod/services/db1",
            "",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
        )
        .await;
    let monitor = api
        .expect(
            Method::PATCH,
            SERVICE_MONITOR,
            "fieldManager=binlogd-operator",
            StatusCode::OK,
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                   "metadata": {"name": "db1"}}),
        )
        .await;
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["metadata"]["ownerReferences"][0]["uid"], "db1-uid");
    // It selects exactly the Service's labels, and scrapes its metrics port.
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port = &service["spec"]["ports"][0];
    assert_eq!(endpoint["port"], port["name"]);
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(
        endpoint["relabelings"][0],
        json!({"action": "replace", "targetLabel": "job", "replacement": "binlogd"})
    );
    api.expect(
        Method::PATCH,
        "/apis/apps/v1/namespaces/prod/statefulsets/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db1"},
               "spec": {"selector": {}, "serviceName": "db1", "template": {}},
               "status": {"replicas": 1, "readyReplicas": 0}}),
    )
    .await;
    server_status(&mut api, &server).await;
    running.await.expect("task").expect("reconciled");
}

/// Without the Prometheus Operator's CRDs, `spec.monitoring` cannot be honoured: the
/// server says so (event and Ready condition) instead of failing with a bare 404.
#[tokio::test]
async fn monitoring_without_the_prometheus_operator_is_told() {
    let (ctx, mut api) = context();
    let server = monitored();
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(server.clone()), ctx));
    api.expect(
        Method::PATCH,
        "/api/v1/namespaces/prod/services/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
    )
    .await;
    api.expect(
        Method::PATCH,
        SERVICE_MONITOR,
        "",
        StatusCode::NOT_FOUND,
        not_found(),
    )
    .await;
    let note = api.expect_event("NoServiceMonitorKind").await;
    assert!(note.contains("install the Prometheus Operator"), "{note}");
    let status = server_status(&mut api, &server).await;
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "NoServiceMonitorKind");
    running.await.expect("task").expect_err("not reconciled");
}

#[tokio::test]
async fn a_spec_change_is_applied_to_the_statefulset_and_an_unready_pod_reported() {
    let (ctx, mut api) = context();
    let mut changed = server();
    changed.spec.semi_sync = true;
    changed.spec.storage.compression = binlogd_operator::crd::Compression::Gzip;
    changed.metadata.generation = Some(4);
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(changed.clone()), ctx));
    api.expect(
        Method::PATCH,
        "/api/v1/namespaces/prod/services/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
    )
    .await;
    no_service_monitor(&mut api).await;
    // The new spec goes into the pod template: the StatefulSet rolls the pod.
    let set = api
        .expect(
            Method::PATCH,
            "/apis/apps/v1/namespaces/prod/statefulsets/db1",
            "fieldManager=binlogd-operator",
            StatusCode::OK,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "db1"},
                   "spec": {"selector": {}, "serviceName": "db1", "template": {}},
                   "status": {"replicas": 1, "readyReplicas": 0}}),
        )
        .await;
    let args: Vec<&str> = set["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(args.contains(&"--semi-sync"), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--compression", "gzip"]),
        "{args:?}"
    );
    // Not ready: no metrics are read, and the status says so.
    let status = server_status(&mut api, &changed).await;
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "PodNotReady");
    assert_eq!(status["observedGeneration"], 4);
    running.await.expect("task").expect("reconciled");
}

fn being_deleted(mut server: BinlogServer) -> BinlogServer {
    server.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    server
}

const POD: &str = "/api/v1/namespaces/prod/pods/db1-0";
const SPOOL_CLAIM: &str = "/api/v1/namespaces/prod/persistentvolumeclaims/spool-db1-0";
const UPLOAD_JOB: &str = "/apis/batch/v1/namespaces/prod/jobs/db1-upload-spool";

fn claim() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "spool-db1-0"}, "spec": {}})
}

fn upload_job(status: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "db1-upload-spool"},
           "spec": {"template": {}}, "status": status})
}

/// The last request of a BinlogServer's deletion: its finalizer list without ours.
async fn finalizer_removed(api: &mut ApiServer, server: &BinlogServer) {
    let patch = api
        .expect(
            Method::PATCH,
            &format!("{SERVERS}/db1"),
            "",
            StatusCode::OK,
            serde_json::to_value(server).expect("json"),
        )
        .await;
    assert_eq!(patch["metadata"]["finalizers"], json!([]));
}

/// The first requests of a deleted BinlogServer's reconcile once its pod is gone and
/// its spool's claim is not.
async fn pod_gone_spool_left(api: &mut ApiServer) {
    api.expect(Method::GET, POD, "", StatusCode::NOT_FOUND, not_found())
        .await;
    api.expect(Method::GET, SPOOL_CLAIM, "", StatusCode::OK, claim())
        .await;
}

#[tokio::test]
async fn a_new_binlog_server_gets_its_finalizer_before_its_statefulset() {
    let (ctx, mut api) = context();
    let mut new = server();
    new.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(new.clone()), ctx));
    let patch = api
        .expect(
            Method::PATCH,
            &format!("{SERVERS}/db1"),
            "",
            StatusCode::OK,
            serde_json::to_value(&new).expect("json"),
        )
        .await;
    assert_eq!(
        patch["metadata"]["finalizers"],
        json!(["example.com/other", "binlogd.io/upload-spool"])
    );
    // Conditional on what was read: another controller's change is a conflict, not lost.
    assert_eq!(patch["metadata"]["resourceVersion"], "41");
    api.expect(
        Method::PATCH,
        "/api/v1/namespaces/prod/services/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
    )
    .await;
    no_service_monitor(&mut api).await;
    api.expect(
        Method::PATCH,
        "/apis/apps/v1/namespaces/prod/statefulsets/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db1"},
               "spec": {"selector": {}, "serviceName": "db1", "template": {}},
               "status": {"replicas": 1, "readyReplicas": 0}}),
    )
    .await;
    server_status(&mut api, &new).await;
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_deleted_binlog_server_first_stops_its_pod() {
    let (ctx, mut api) = context();
    let deleting = being_deleted(server());
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(deleting.clone()), ctx));
    api.expect(
        Method::GET,
        POD,
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db1-0"}}),
    )
    .await;
    // Scaled to zero, not deleted: binlogd gets SIGTERM and uploads what it can.
    let scale = api
        .expect(
            Method::PATCH,
            "/apis/apps/v1/namespaces/prod/statefulsets/db1",
            "",
            StatusCode::OK,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db1"},
                   "spec": {"selector": {}, "serviceName": "db1", "template": {}}}),
        )
        .await;
    assert_eq!(scale, json!({"spec": {"replicas": 0}}));
    let status = server_status(&mut api, &deleting).await;
    assert_eq!(status["conditions"][0]["reason"], "Stopping");
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_deleted_binlog_servers_spool_is_uploaded_then_its_claim_deleted() {
    let deleting = being_deleted(server());
    // First pass: the pod is gone, the spool's claim is not: the upload Job starts.
    let (ctx, mut api) = context();
    let running = tokio::spawn(reconcile_binlog_server(
        Arc::new(deleting.clone()),
        ctx.clone(),
    ));
    pod_gone_spool_left(&mut api).await;
    api.expect(
        Method::GET,
        UPLOAD_JOB,
        "",
        StatusCode::NOT_FOUND,
        not_found(),
    )
    .await;
    let job = api
        .expect(
            Method::POST,
            "/apis/batch/v1/namespaces/prod/jobs",
            "",
            StatusCode::CREATED,
            upload_job(json!({})),
        )
        .await;
    let pod = &job["spec"]["template"]["spec"];
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "upload");
    assert!(
        args.windows(2)
            .any(|w| w == ["--spool-dir", "/var/lib/binlogd/spool"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--archive", "s3://backups/db1"]),
        "{args:?}"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "spool-db1-0"
    );
    assert!(
        job["metadata"].get("ownerReferences").is_none(),
        "the garbage collector would take it with the BinlogServer: {job}"
    );
    let note = api.expect_event("UploadingSpool").await;
    assert!(note.contains("spool-db1-0"), "{note}");
    let status = server_status(&mut api, &deleting).await;
    assert_eq!(status["conditions"][0]["reason"], "UploadingSpool");
    running.await.expect("task").expect("reconciled");

    // Later: the Job succeeded. The claim and the Job go, then the finalizer.
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(deleting.clone()), ctx));
    pod_gone_spool_left(&mut api).await;
    api.expect(
        Method::GET,
        UPLOAD_JOB,
        "",
        StatusCode::OK,
        upload_job(json!({"succeeded": 1})),
    )
    .await;
    api.expect(Method::DELETE, SPOOL_CLAIM, "", StatusCode::OK, claim())
        .await;
    let delete = api
        .expect(
            Method::DELETE,
            UPLOAD_JOB,
            "",
            StatusCode::OK,
            upload_job(json!({"succeeded": 1})),
        )
        .await;
    assert_eq!(
        delete["propagationPolicy"], "Background",
        "its pod goes too"
    );
    api.expect_event("SpoolUploaded").await;
    finalizer_removed(&mut api, &deleting).await;
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_failed_spool_upload_keeps_the_claim_and_says_what_to_do() {
    let (ctx, mut api) = context();
    let deleting = being_deleted(server());
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(deleting.clone()), ctx));
    pod_gone_spool_left(&mut api).await;
    api.expect(
        Method::GET,
        UPLOAD_JOB,
        "",
        StatusCode::OK,
        upload_job(json!({"failed": 2, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})),
    )
    .await;
    let words = "binlogd: the object store did not take the spool's last 81234 bytes in 300 s";
    pods_listed(
        &mut api,
        "labelSelector=job-name%3Ddb1-upload-spool",
        json!([
            {"metadata": {"name": "db1-upload-spool-x"}, "status": {"phase": "Failed",
             "containerStatuses": [{"name": "upload", "image": "binlogd", "imageID": "",
               "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 1, "message": words}}}]}}]),
    )
    .await;
    let note = api.expect_event("SpoolNotUploaded").await;
    assert!(note.contains(words), "{note}");
    assert!(
        note.contains("delete Job db1-upload-spool to try again")
            && note.contains("remove the finalizer binlogd.io/upload-spool"),
        "{note}"
    );
    let status = server_status(&mut api, &deleting).await;
    assert_eq!(status["conditions"][0]["reason"], "SpoolNotUploaded");
    // No DELETE of the claim, no finalizer removed: nothing more was asked.
    running.await.expect("task").expect("reconciled");
    api.expect_nothing_more("nothing deleted").await;
}

#[tokio::test]
async fn a_spool_upload_whose_first_pod_failed_is_waited_for() {
    let (ctx, mut api) = context();
    let deleting = being_deleted(server());
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(deleting), ctx));
    pod_gone_spool_left(&mut api).await;
    // One pod failed, the Job makes another: no verdict yet.
    api.expect(
        Method::GET,
        UPLOAD_JOB,
        "",
        StatusCode::OK,
        upload_job(json!({"failed": 1})),
    )
    .await;
    running.await.expect("task").expect("reconciled");
    api.expect_nothing_more("nothing reported, nothing deleted")
        .await;
}

#[tokio::test]
async fn a_deleted_binlog_server_that_never_ran_goes_at_once() {
    let (ctx, mut api) = context();
    let deleting = being_deleted(server());
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(deleting.clone()), ctx));
    api.expect(Method::GET, POD, "", StatusCode::NOT_FOUND, not_found())
        .await;
    api.expect(
        Method::GET,
        SPOOL_CLAIM,
        "",
        StatusCode::NOT_FOUND,
        not_found(),
    )
    .await;
    finalizer_removed(&mut api, &deleting).await;
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_deleted_binlog_server_without_the_finalizer_is_left_alone() {
    let (ctx, mut api) = context();
    let mut deleting = being_deleted(server());
    deleting.metadata.finalizers = None;
    reconcile_binlog_server(Arc::new(deleting), ctx)
        .await
        .expect("reconciled");
    // No request came: the client is gone (None) or nothing arrived in time.
    api.expect_nothing_more("no request").await;
    // The StatefulSet and Service name it as their controlling owner: the garbage
    // collector deletes them after it.
    let set = binlogd_operator::workloads::binlog_server_statefulset(&server()).expect("set");
    let owner = &set.metadata.owner_references.expect("owners")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("BinlogServer", "db1", Some(true))
    );
}

/// The first requests of every restore reconcile: the BinlogServer named, then the Job.
async fn archive_found(api: &mut ApiServer) {
    api.expect(
        Method::GET,
        &format!("{SERVERS}/db1"),
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
}

async fn archive_found_and_no_job(api: &mut ApiServer) {
    archive_found(api).await;
    api.expect(Method::GET, JOB, "", StatusCode::NOT_FOUND, not_found())
        .await;
}

/// ... and the Job exists, with `status`.
async fn archive_found_and_job(api: &mut ApiServer, status: serde_json::Value) {
    archive_found(api).await;
    api.expect(
        Method::GET,
        JOB,
        "",
        StatusCode::OK,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "undo-drop-restore"},
               "spec": {"template": {}}, "status": status}),
    )
    .await;
}

#[tokio::test]
async fn a_restore_waits_while_a_pod_still_mounts_the_database_claim() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    pods_listed(
        &mut api,
        "",
        json!([
            {"metadata": {"name": "db1-0"}, "status": {"phase": "Running"},
             "spec": {"containers": [], "volumes": [
                 {"name": "data", "persistentVolumeClaim": {"claimName": "data-db1-0"}}]}},
            {"metadata": {"name": "old-job"}, "status": {"phase": "Succeeded"},
             "spec": {"containers": [], "volumes": [
                 {"name": "data", "persistentVolumeClaim": {"claimName": "data-db1-0"}}]}}
        ]),
    )
    .await;
    restore_jobs_listed(&mut api, json!([])).await;
    let note = api.expect_event("ClaimInUse").await;
    assert!(note.contains("pod db1-0 still mounts"), "{note}");
    let status = restore_status(&mut api, &restore).await;
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["target"], "before 0-1-7342");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("scale its StatefulSet to 0")),
        "{status}"
    );
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_second_restore_of_a_claim_waits_for_the_first_ones_job() {
    // The first restore's Job exists but its pod does not yet: only the Job shows that
    // a replay is about to run on the datadir.
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    pods_listed(&mut api, "", json!([])).await;
    let volumes = json!([{"name": "datadir",
                          "persistentVolumeClaim": {"claimName": "data-db1-0"}}]);
    restore_jobs_listed(
        &mut api,
        json!([
            {"metadata": {"name": "earlier-restore"}, "status": {"active": 1},
             "spec": {"template": {"spec": {"containers": [], "volumes": volumes}}}},
            // Finished ones, and other claims', do not hold it up.
            {"metadata": {"name": "older-restore"}, "status": {"succeeded": 1},
             "spec": {"template": {"spec": {"containers": [], "volumes": volumes}}}},
            {"metadata": {"name": "other-db"}, "status": {"active": 1},
             "spec": {"template": {"spec": {"containers": [], "volumes": [
                 {"name": "datadir", "persistentVolumeClaim": {"claimName": "data-db2-0"}}]}}}}
        ]),
    )
    .await;
    let note = api.expect_event("ClaimInUse").await;
    assert!(
        note.contains("restore Job earlier-restore has not finished")
            && !note.contains("older-restore")
            && !note.contains("other-db"),
        "{note}"
    );
    let status = restore_status(&mut api, &restore).await;
    assert_eq!(status["phase"], "Pending");
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_restore_creates_its_job_once_the_claim_is_free() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    pods_listed(&mut api, "", json!([])).await;
    restore_jobs_listed(&mut api, json!([])).await;
    let job = api
        .expect(
            Method::POST,
            "/apis/batch/v1/namespaces/prod/jobs",
            "",
            StatusCode::CREATED,
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "undo-drop-restore"}, "spec": {"template": {}}}),
        )
        .await;
    assert_eq!(job["metadata"]["name"], "undo-drop-restore");
    let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "restore");
    assert!(
        args.as_array()
            .expect("args")
            .windows(2)
            .any(|w| w[0] == "--before-gtid" && w[1] == "0-1-7342"),
        "{args}"
    );
    api.expect_event("Started").await;
    let status = restore_status(&mut api, &restore).await;
    assert_eq!(status["phase"], "Planning");
    running.await.expect("task").expect("reconciled");
}

/// A restore whose Job failed with binlogd's `last_words`, having logged `log`: the note
/// of the Failed event and the status written.
async fn a_failed_job(last_words: &str, log: &str) -> (String, serde_json::Value) {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_job(&mut api, json!({"failed": 1})).await;
    pods_listed(
        &mut api,
        "labelSelector=job-name%3Dundo-drop-restore",
        json!([
            {"metadata": {"name": "undo-drop-restore-x1"}, "status": {"containerStatuses": [
                {"name": "restore", "image": "mariadb:10.11", "imageID": "", "ready": false,
                 "restartCount": 0, "state": {"terminated": {"exitCode": 1,
                 "message": last_words}}}]}}
        ]),
    )
    .await;
    api.expect_text(
        Method::GET,
        &log_path("undo-drop-restore-x1"),
        "container=restore",
        log,
    )
    .await;
    api.expect_event("Planned").await;
    let note = api.expect_event("Failed").await;
    let status = restore_status(&mut api, &restore).await;
    running.await.expect("task").expect("reconciled");
    (note, status)
}

#[tokio::test]
async fn a_failed_job_fails_the_restore_with_binlogds_last_words() {
    let (note, status) = a_failed_job(
        "binlogd: transaction 0-1-42 failed to apply: error 1062\n",
        &log_until("relay logs staged"),
    )
    .await;
    assert!(
        note.contains("transaction 0-1-42 failed to apply"),
        "{note}"
    );
    assert_eq!(status["phase"], "Failed");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("error 1062"), "{message}");
    // The server had begun to replay: the volume must be restored again.
    assert!(
        message.contains("data-db1-0 may hold part of the replay: restore it from the base backup"),
        "{message}"
    );
}

#[tokio::test]
async fn a_job_that_failed_before_replaying_says_the_volume_is_untouched() {
    let (_, status) = a_failed_job(
        "binlogd: staging: segment 0001-server1/mariadb-bin.000003 at 81920: checksum mismatch\n",
        &log_until("planned"),
    )
    .await;
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("so data-db1-0 is as it was"), "{message}");
}

#[tokio::test]
async fn a_succeeded_job_completes_the_restore_and_a_missing_archive_fails_it() {
    let (ctx, mut api) = context();
    let restore_resource = restore();
    let running = tokio::spawn(reconcile_restore(
        Arc::new(restore_resource.clone()),
        ctx.clone(),
    ));
    archive_found_and_job(&mut api, json!({"succeeded": 1})).await;
    job_pod(&mut api).await;
    api.expect_text(
        Method::GET,
        &log_path("undo-drop-restore-x1"),
        "container=restore",
        RESTORE_LOG,
    )
    .await;
    let planned = api.expect_event("Planned").await;
    assert!(planned.contains("transactions"), "{planned}");
    api.expect_event("Applied").await;
    let status = restore_status(&mut api, &restore_resource).await;
    assert_eq!(
        (status["phase"].as_str(), status["progress"].as_str()),
        (Some("Succeeded"), Some("100%"))
    );
    let plan = &status["plan"];
    assert_eq!(plan["targetGtid"], status["reachedGtid"]);
    assert!(
        plan["transactions"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    assert!(status["reachedTime"].is_string(), "{status}");
    running.await.expect("task").expect("reconciled");

    // A BinlogServer that does not exist: failed at once, saying which field to fix.
    let running = tokio::spawn(reconcile_restore(Arc::new(restore()), ctx));
    api.expect(
        Method::GET,
        &format!("{SERVERS}/db1"),
        "",
        StatusCode::NOT_FOUND,
        not_found(),
    )
    .await;
    let note = api.expect_event("Failed").await;
    assert!(note.contains("fix spec.binlogServerRef"), "{note}");
    let status = restore_status(&mut api, &restore_resource).await;
    assert_eq!(status["phase"], "Failed");
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_restore_that_stopped_short_of_its_target_says_so_in_a_warning() {
    // strict: false, and the archive ended before the target: the Job succeeds, and
    // binlogd's log says what it reached and what was asked.
    let (ctx, mut api) = context();
    let mut resource = restore();
    resource.spec.strict = false;
    let running = tokio::spawn(reconcile_restore(Arc::new(resource.clone()), ctx));
    archive_found_and_job(&mut api, json!({"succeeded": 1})).await;
    job_pod(&mut api).await;
    let short = RESTORE_LOG
        .replace("\"target_reached\":true", "\"target_reached\":false")
        .replace(
            "\"asked\":\"GTID 0-1-232\"",
            "\"asked\":\"before GTID 0-1-7342\"",
        );
    assert_ne!(
        short, RESTORE_LOG,
        "the log names what was asked and reached"
    );
    api.expect_text(
        Method::GET,
        &log_path("undo-drop-restore-x1"),
        "container=restore",
        &short,
    )
    .await;
    api.expect_event("Planned").await;
    let note = api.expect_event("ShortOfTarget").await;
    assert!(
        note.contains("restored to 0-1-232")
            && note.contains("SHORT of the target before GTID 0-1-7342"),
        "{note}"
    );
    let status = restore_status(&mut api, &resource).await;
    assert_eq!(status["reachedGtid"], "0-1-232");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("SHORT of the target")),
        "{status}"
    );
    running.await.expect("task").expect("reconciled");
}

fn refusal(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

#[tokio::test]
async fn a_refused_statefulset_is_told_in_an_event_and_the_ready_condition() {
    let (ctx, mut api) = context();
    let mut server = server();
    server.status = Some(BinlogServerStatus {
        last_archived_gtid: Some("0-1-5".into()),
        ..Default::default()
    });
    let running = tokio::spawn(reconcile_binlog_server(Arc::new(server.clone()), ctx));
    api.expect(
        Method::PATCH,
        "/api/v1/namespaces/prod/services/db1",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db1"}}),
    )
    .await;
    no_service_monitor(&mut api).await;
    let quota = "statefulsets.apps \"db1\" is forbidden: exceeded quota: compute, \
                 requested: limits.memory=2Gi";
    api.expect(
        Method::PATCH,
        "/apis/apps/v1/namespaces/prod/statefulsets/db1",
        "",
        StatusCode::FORBIDDEN,
        refusal(403, "Forbidden", quota),
    )
    .await;
    let note = api.expect_event("ApplyFailed").await;
    assert!(note.contains(quota), "{note}");
    assert!(!note.contains("ErrorResponse"), "no debug dump: {note}");
    let body = api
        .expect(
            Method::PATCH,
            &format!("{SERVERS}/db1/status"),
            "",
            StatusCode::OK,
            serde_json::to_value(&server).expect("json"),
        )
        .await;
    let ready = &body["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"], &ready["reason"]),
        (&json!("Ready"), &json!("False"), &json!("ApplyFailed"))
    );
    assert!(
        ready["message"].as_str().is_some_and(|m| m.contains(quota)),
        "{ready}"
    );
    // What the status said before is kept: only the condition changes.
    assert!(body["status"].get("lastArchivedGtid").is_none(), "{body}");
    let err = running
        .await
        .expect("task")
        .expect_err("the reconcile fails, to be retried");
    assert!(err.to_string().contains("exceeded quota"), "{err}");
}

#[tokio::test]
async fn a_restore_the_api_server_refuses_says_so_and_is_retried() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found(&mut api).await;
    api.expect(
        Method::GET,
        JOB,
        "",
        StatusCode::FORBIDDEN,
        refusal(
            403,
            "Forbidden",
            "jobs.batch \"undo-drop-restore\" is forbidden: User \"system:serviceaccount:binlogd:binlogd-operator\" cannot get resource \"jobs\"",
        ),
    )
    .await;
    let note = api.expect_event("ApplyFailed").await;
    assert!(note.contains("cannot get resource \"jobs\""), "{note}");
    let status = restore_status(&mut api, &restore).await;
    // Not failed: the next attempt may get through (RBAC fixed).
    assert!(status.get("phase").is_none(), "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot get resource") && m.contains("retrying")),
        "{status}"
    );
    running.await.expect("task").expect_err("retried");
}

#[tokio::test]
async fn an_impossible_restore_spec_fails_the_restore_without_a_job() {
    let (ctx, mut api) = context();
    let mut restore = restore();
    restore.spec.target.latest = true; // and beforeGtid: two targets
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    pods_listed(&mut api, "", json!([])).await;
    restore_jobs_listed(&mut api, json!([])).await;
    let note = api.expect_event("Failed").await;
    assert!(note.contains("spec.target"), "{note}");
    let status = restore_status(&mut api, &restore).await;
    assert_eq!(status["phase"], "Failed");
    running
        .await
        .expect("task")
        .expect("a failed restore is reconciled");
}
