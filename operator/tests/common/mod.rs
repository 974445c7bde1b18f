//! The scripted API server the operator's tests talk to (`tower_test`'s mock service, as
//! kube-rs recommends where no cluster can run), and the resources they use.

#![allow(dead_code)]

use binlogd_operator::controller::Context;
use binlogd_operator::crd::{
    BinlogServer, BinlogServerSpec, Compression, DatabaseSpec, PointInTimeRestore,
    PointInTimeRestoreSpec, RestoreMethod, RestoreTarget, SecretKeyRef, SourceSpec, StorageSpec,
};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The scripted API server.
pub struct ApiServer(pub Handle);

impl ApiServer {
    /// Expects the next request to be `method` on `path` (and a query containing `query`),
    /// answers `status` with `answer`, and returns the request's body.
    pub async fn expect(
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

    /// Like [`ApiServer::expect`], answering with `text` as it is (a pod's log).
    pub async fn expect_text(&mut self, method: Method, path: &str, query: &str, text: &str) {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
                .await
                .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
                .expect("the client is gone");
        assert_eq!((request.method(), request.uri().path()), (&method, path));
        let query_string = request.uri().query().unwrap_or_default().to_owned();
        assert!(
            query_string.contains(query),
            "{path}?{query_string} lacks {query}"
        );
        respond.send_response(
            Response::builder()
                .body(Body::from(text.as_bytes().to_vec()))
                .expect("response"),
        );
    }

    /// Expects no further request (the client gone, or nothing within 200 ms).
    pub async fn expect_nothing_more(&mut self, why: &str) {
        let next = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
        assert!(!matches!(next, Ok(Some(_))), "a request came: {why}");
    }

    /// Expects an Event with `reason` on the resource; returns its note.
    pub async fn expect_event(&mut self, reason: &str) -> String {
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
    pub async fn expect_status(&mut self, path: &str, resource: &Value) -> Value {
        let body = self
            .expect(Method::PATCH, path, "", StatusCode::OK, resource.clone())
            .await;
        body["status"].clone()
    }
}

pub fn context() -> (Arc<Context>, ApiServer) {
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

/// The ServiceMonitor of `db1` in `prod`, where the operator keeps one for
/// `spec.monitoring`.
pub const SERVICE_MONITOR: &str =
    "/apis/monitoring.coreos.com/v1/namespaces/prod/servicemonitors/db1";

/// Without `spec.monitoring`, the operator deletes a ServiceMonitor it may have made
/// before; here there is none.
pub async fn no_service_monitor(api: &mut ApiServer) {
    api.expect(
        Method::DELETE,
        SERVICE_MONITOR,
        "",
        StatusCode::NOT_FOUND,
        not_found(),
    )
    .await;
}

pub fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

pub fn stored<K: Resource<DynamicType = ()>>(mut resource: K, name: &str) -> K {
    let meta = resource.meta_mut();
    meta.name = Some(name.into());
    meta.namespace = Some("prod".into());
    meta.uid = Some(format!("{name}-uid"));
    meta.generation = Some(3);
    resource
}

pub fn storage() -> StorageSpec {
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

pub fn server() -> BinlogServer {
    let mut server = stored(
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
                serve: None,
                monitoring: None,
            },
        ),
        "db1",
    );
    // As it is once the operator has seen it.
    server.metadata.finalizers = Some(vec![
        binlogd_operator::controller::SPOOL_FINALIZER.to_owned(),
    ]);
    server.metadata.resource_version = Some("41".into());
    server
}

pub fn restore() -> PointInTimeRestore {
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
                    run_as_user: 999,
                    run_as_group: 999,
                },
                parallel_workers: None,
                staging: None,
                method: RestoreMethod::RelayLogs,
                resources: None,
            },
        ),
        "undo-drop",
    )
}

/// A client on a new scripted API server.
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}
