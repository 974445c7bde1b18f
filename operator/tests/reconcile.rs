//! The reconcilers against a scripted API server (`tower_test`'s mock service, as kube-rs
//! recommends where no cluster can run): each test states, in order, every request the
//! reconciler must make, checks what it sends, and answers as the API server would.

use binlogd_operator::controller::{Context, reconcile_binlog_server, reconcile_restore};
use binlogd_operator::crd::{
    BinlogServer, BinlogServerSpec, Compression, DatabaseSpec, PointInTimeRestore,
    PointInTimeRestoreSpec, RestoreTarget, SecretKeyRef, SourceSpec, StorageSpec,
};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The scripted API server.
struct ApiServer(Handle);

impl ApiServer {
    /// Expects the next request to be `method` on `path` (and a query containing `query`),
    /// answers `status` with `answer`, and returns the request's body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        query: &str,
        status: StatusCode,
        answer: Value,
    ) -> Value {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
                .await
                .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
                .expect("the client is gone");
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "request {} {}",
            request.method(),
            request.uri()
        );
        let query_string = request.uri().query().unwrap_or_default().to_owned();
        assert!(
            query_string.contains(query),
            "{path}?{query_string} lacks {query}"
        );
        let body = request.into_body().collect_bytes().await.expect("body");
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("a JSON body")
        };
        respond.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response"),
        );
        body
    }

    /// Expects an Event with `reason` on the resource; returns its note.
    async fn expect_event(&mut self, reason: &str) -> String {
        let body = self
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/prod/events",
                "",
                StatusCode::CREATED,
                Value::Null,
            )
            .await;
        assert_eq!(body["reason"], reason, "{body}");
        body["note"].as_str().unwrap_or_default().to_owned()
    }

    /// Expects a status patch; returns the status sent.
    async fn expect_status(&mut self, path: &str, resource: &Value) -> Value {
        let body = self
            .expect(Method::PATCH, path, "", StatusCode::OK, resource.clone())
            .await;
        body["status"].clone()
    }
}

fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "binlogd-operator".into(),
            instance: None,
        },
    );
    (
        Arc::new(Context {
            client,
            recorder,
            binlogd_image: "binlogd:test".into(),
        }),
        ApiServer(handle),
    )
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

fn stored<K: Resource<DynamicType = ()>>(mut resource: K, name: &str) -> K {
    let meta = resource.meta_mut();
    meta.name = Some(name.into());
    meta.namespace = Some("prod".into());
    meta.uid = Some(format!("{name}-uid"));
    meta.generation = Some(3);
    resource
}

fn storage() -> StorageSpec {
    StorageSpec {
        bucket: "backups".into(),
        prefix: "db1".into(),
        region: None,
        endpoint: None,
        credentials_secret: None,
        service_account_name: Some("binlogd".into()),
        sse_c_key_secret: None,
        compression: Compression::Zstd,
        checkpoint_interval_seconds: 1,
        retention: None,
    }
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
                    password_secret: SecretKeyRef {
                        name: "db1-repl".into(),
                        key: "password".into(),
                    },
                    tls: None,
                    server_id: None,
                },
                storage: storage(),
                semi_sync: false,
                spool: None,
                image: None,
                resources: None,
                node_selector: None,
                tolerations: None,
            },
        ),
        "db1",
    )
}

fn restore() -> PointInTimeRestore {
    stored(
        PointInTimeRestore::new(
            "undo-drop",
            PointInTimeRestoreSpec {
                binlog_server_ref: Some("db1".into()),
                storage: None,
                target: RestoreTarget {
                    before_gtid: Some("0-1-7342".into()),
                    ..RestoreTarget::default()
                },
                strict: false,
                database: DatabaseSpec {
                    pvc_name: "data-db1-0".into(),
                    sub_path: None,
                    image: "mariadb:10.11".into(),
                    config: None,
                    from_gtid: None,
                },
                parallel_workers: None,
                staging: None,
                resources: None,
            },
        ),
        "undo-drop",
    )
}

const SERVERS: &str = "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers";
const RESTORE_STATUS: &str =
    "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores/undo-drop/status";
const JOB: &str = "/apis/batch/v1/namespaces/prod/jobs/undo-drop-restore";

#[tokio::test]
async fn a_binlog_server_is_applied_and_its_readiness_reported() {
    let (ctx, mut api) = context();
    let server = server();
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
    let status = api
        .expect_status(
            &format!("{SERVERS}/db1/status"),
            &serde_json::to_value(&server).expect("json"),
        )
        .await;
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][1]["type"], "Streaming");
    assert_eq!(status["conditions"][1]["status"], "True");
    assert_eq!(status["conditions"][2]["type"], "StorageReady");
    assert_eq!(status["lastArchivedGtid"], "0-1-5");
    assert_eq!(status["lastArchivedTime"], "2026-11-23T13:38:14Z");
    assert_eq!(status["lastRecoverableTime"], "2026-11-23T13:38:14Z");
    assert_eq!(status["lagSeconds"], 0.0);
    assert_eq!(status["observedGeneration"], 3);
    running.await.expect("task").expect("reconciled");
}

/// The first requests of every restore reconcile: the BinlogServer named, then the Job.
async fn archive_found_and_no_job(api: &mut ApiServer) {
    api.expect(
        Method::GET,
        &format!("{SERVERS}/db1"),
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
    api.expect(Method::GET, JOB, "", StatusCode::NOT_FOUND, not_found())
        .await;
}

#[tokio::test]
async fn a_restore_waits_while_a_pod_still_mounts_the_database_claim() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    api.expect(
        Method::GET,
        "/api/v1/namespaces/prod/pods",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "db1-0"}, "status": {"phase": "Running"},
             "spec": {"containers": [], "volumes": [
                 {"name": "data", "persistentVolumeClaim": {"claimName": "data-db1-0"}}]}},
            {"metadata": {"name": "old-job"}, "status": {"phase": "Succeeded"},
             "spec": {"containers": [], "volumes": [
                 {"name": "data", "persistentVolumeClaim": {"claimName": "data-db1-0"}}]}}
        ]}),
    )
    .await;
    let note = api.expect_event("ClaimInUse").await;
    assert!(note.contains("pod db1-0 still mounts"), "{note}");
    let status = api
        .expect_status(
            RESTORE_STATUS,
            &serde_json::to_value(&restore).expect("json"),
        )
        .await;
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
async fn a_restore_creates_its_job_once_the_claim_is_free() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    archive_found_and_no_job(&mut api).await;
    api.expect(
        Method::GET,
        "/api/v1/namespaces/prod/pods",
        "",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
    )
    .await;
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
    let status = api
        .expect_status(
            RESTORE_STATUS,
            &serde_json::to_value(&restore).expect("json"),
        )
        .await;
    assert_eq!(status["phase"], "Applying");
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_failed_job_fails_the_restore_with_binlogds_last_words() {
    let (ctx, mut api) = context();
    let restore = restore();
    let running = tokio::spawn(reconcile_restore(Arc::new(restore.clone()), ctx));
    api.expect(
        Method::GET,
        &format!("{SERVERS}/db1"),
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
    api.expect(
        Method::GET,
        JOB,
        "",
        StatusCode::OK,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "undo-drop-restore"},
               "spec": {"template": {}}, "status": {"failed": 1}}),
    )
    .await;
    api.expect(
        Method::GET,
        "/api/v1/namespaces/prod/pods",
        "labelSelector=job-name%3Dundo-drop-restore",
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "undo-drop-restore-x1"}, "status": {"containerStatuses": [
                {"name": "restore", "image": "mariadb:10.11", "imageID": "", "ready": false,
                 "restartCount": 0, "state": {"terminated": {"exitCode": 1,
                 "message": "binlogd: transaction 0-1-42 failed to apply: error 1062\n"}}}]}}
        ]}),
    )
    .await;
    let note = api.expect_event("Failed").await;
    assert!(
        note.contains("transaction 0-1-42 failed to apply"),
        "{note}"
    );
    let status = api
        .expect_status(
            RESTORE_STATUS,
            &serde_json::to_value(&restore).expect("json"),
        )
        .await;
    assert_eq!(status["phase"], "Failed");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("error 1062")),
        "{status}"
    );
    running.await.expect("task").expect("reconciled");
}

#[tokio::test]
async fn a_succeeded_job_completes_the_restore_and_a_missing_archive_fails_it() {
    let (ctx, mut api) = context();
    let restore_resource = restore();
    let running = tokio::spawn(reconcile_restore(
        Arc::new(restore_resource.clone()),
        ctx.clone(),
    ));
    api.expect(
        Method::GET,
        &format!("{SERVERS}/db1"),
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
    api.expect(
        Method::GET,
        JOB,
        "",
        StatusCode::OK,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "undo-drop-restore"},
               "spec": {"template": {}}, "status": {"succeeded": 1}}),
    )
    .await;
    api.expect_event("Applied").await;
    let status = api
        .expect_status(
            RESTORE_STATUS,
            &serde_json::to_value(&restore_resource).expect("json"),
        )
        .await;
    assert_eq!(
        (status["phase"].as_str(), status["progress"].as_str()),
        (Some("Succeeded"), Some("100%"))
    );
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
    let status = api
        .expect_status(
            RESTORE_STATUS,
            &serde_json::to_value(&restore_resource).expect("json"),
        )
        .await;
    assert_eq!(status["phase"], "Failed");
    running.await.expect("task").expect("reconciled");
}
