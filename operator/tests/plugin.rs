//! `kubectl binlogd` against a scripted API server (see `common`).

mod common;

use binlogd_operator::crd::{RestoreMethod, RestoreTarget};
use binlogd_operator::plugin::{self, PluginError, RestoreRequest};
use common::{client, server};
use http::{Method, StatusCode};
use kube::Resource;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn status_shows_each_archive_and_restore() {
    let (client, mut api) = client();
    let printing = tokio::spawn(async move {
        let mut out = Vec::new();
        plugin::status(client, Some("prod"), &mut out)
            .await
            .map(|()| out)
    });
    let mut listed = serde_json::to_value(server()).expect("json");
    listed["status"] = json!({"lastArchivedGtid": "0-1-5", "lastRecoverableTime": "2026-11-23T13:38:14Z",
    "lagSeconds": 0.25, "conditions": [{"type": "Ready", "status": "True", "reason": "PodReady",
    "message": "", "lastTransitionTime": "2026-11-23T13:00:00Z"}],
    "replicas": [
        {"peer": "10.0.0.7:51234", "user": "repl", "serverId": 3, "file": "mariadb-bin.000042",
         "position": 1234, "lagSeconds": 0.0, "sentBytes": 1288490189u64},
        {"peer": "10.0.0.8:40000", "user": "repl", "serverId": 4, "file": "mariadb-bin.000040",
         "position": 4, "lagSeconds": 12.0, "sentBytes": 512}
    ]});
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers",
        "",
        StatusCode::OK,
        json!({"apiVersion": "binlogd.io/v1alpha1", "kind": "BinlogServerList", "metadata": {}, "items": [listed]}),
    )
    .await;
    let mut restore = serde_json::to_value(common::restore()).expect("json");
    restore["status"] = json!({"target": "before 0-1-7342", "phase": "Applying", "progress": "42%",
        "message": "Job undo-drop-restore is running"});
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores",
        "",
        StatusCode::OK,
        json!({"apiVersion": "binlogd.io/v1alpha1", "kind": "PointInTimeRestoreList", "metadata": {}, "items": [restore]}),
    )
    .await;
    let out = String::from_utf8(printing.await.expect("task").expect("printed")).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE") && lines[0].ends_with("READY"),
        "{out}"
    );
    for expected in [
        "prod",
        "db1",
        "s3://backups/db1",
        "0-1-5",
        "2026-11-23T13:38:14Z",
        "0.2s",
        "True",
    ] {
        assert!(lines[1].contains(expected), "{expected} missing: {out}");
    }
    // A line per replica of `binlogd serve`, under its server's.
    assert_eq!(
        lines[2],
        "  replica 10.0.0.7:51234 (server_id 3, user repl): sent mariadb-bin.000042:1234, \
         caught up, 1.2 GiB sent",
        "{out}"
    );
    assert_eq!(
        lines[3],
        "  replica 10.0.0.8:40000 (server_id 4, user repl): sent mariadb-bin.000040:4, \
         12s behind, 512 B sent",
        "{out}"
    );
    let restore_line = lines
        .iter()
        .find(|l| l.contains("undo-drop"))
        .expect("the restore");
    for expected in ["before 0-1-7342", "Applying", "42%", "is running"] {
        assert!(restore_line.contains(expected), "{expected} missing: {out}");
    }
}

fn request() -> RestoreRequest {
    RestoreRequest {
        name: "undo-drop".into(),
        namespace: "prod".into(),
        binlog_server: "db1".into(),
        target: RestoreTarget {
            before_gtid: Some("0-1-7342".into()),
            ..RestoreTarget::default()
        },
        strict: true,
        pvc: "data-db1-0".into(),
        image: "mariadb:10.11".into(),
        run_as_user: 999,
        parallel_workers: Some(4),
        method: RestoreMethod::Replication,
    }
}

#[tokio::test]
async fn restore_creates_the_resource_and_follows_it_to_the_end() {
    let (client, mut api) = client();
    let following = tokio::spawn(async move {
        let mut out = Vec::new();
        let result = plugin::restore(client, &request(), Duration::from_millis(1), &mut out).await;
        (result, out)
    });
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
    let created = api
        .expect(
            Method::POST,
            "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores",
            "",
            StatusCode::CREATED,
            serde_json::to_value(common::restore()).expect("json"),
        )
        .await;
    assert_eq!(created["spec"]["binlogServerRef"], "db1");
    assert_eq!(created["spec"]["target"]["beforeGtid"], "0-1-7342");
    assert_eq!(created["spec"]["database"]["pvcName"], "data-db1-0");
    assert_eq!(created["spec"]["strict"], true);
    assert_eq!(created["spec"]["method"], "replication");
    let path = "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores/undo-drop";
    for status in [
        json!({"phase": "Applying", "progress": "10%"}),
        json!({"phase": "Applying", "progress": "10%"}),
        json!({"phase": "Succeeded", "progress": "100%", "message": "restored to before 0-1-7342"}),
    ] {
        let mut resource = serde_json::to_value(common::restore()).expect("json");
        resource["status"] = status;
        api.expect(Method::GET, path, "", StatusCode::OK, resource)
            .await;
    }
    let (result, out) = following.await.expect("task");
    result.expect("succeeded");
    let out = String::from_utf8(out).expect("utf8");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "created PointInTimeRestore prod/undo-drop",
            "Applying 10% -",
            "Succeeded 100% restored to before 0-1-7342"
        ],
        "a line per change"
    );
}

#[tokio::test]
async fn a_failed_restore_is_an_error_with_its_message_and_a_missing_server_is_refused() {
    let (client, mut api) = client();
    let following = tokio::spawn(async move {
        let mut out = Vec::new();
        plugin::restore(client, &request(), Duration::from_millis(1), &mut out).await
    });
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::OK,
        serde_json::to_value(server()).expect("json"),
    )
    .await;
    api.expect(
        Method::POST,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores",
        "",
        StatusCode::CREATED,
        serde_json::to_value(common::restore()).expect("json"),
    )
    .await;
    let mut failed = serde_json::to_value(common::restore()).expect("json");
    failed["status"] = json!({"phase": "Failed", "message": "Job undo-drop-restore failed: gap"});
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/pointintimerestores/undo-drop",
        "",
        StatusCode::OK,
        failed,
    )
    .await;
    let err = following.await.expect("task").expect_err("failed");
    assert!(
        matches!(&err, PluginError::RestoreFailed { message, .. } if message.contains("gap")),
        "{err}"
    );

    let (client, mut api) = common::client();
    let refusing = tokio::spawn(async move {
        let mut out = Vec::new();
        plugin::restore(client, &request(), Duration::from_millis(1), &mut out).await
    });
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::NOT_FOUND,
        common::not_found(),
    )
    .await;
    let err = refusing.await.expect("task").expect_err("refused");
    assert_eq!(err.to_string(), "no BinlogServer db1 in namespace prod");
}

#[tokio::test]
async fn search_runs_binlogd_search_on_the_servers_archive() {
    let (client, mut api) = client();
    let building = tokio::spawn(async move {
        plugin::search_command(
            client,
            "prod",
            "db1",
            Some("0-1-5000"),
            &["--time".to_owned(), "2026-11-23T09:59:59Z".to_owned()],
        )
        .await
    });
    let mut with_endpoint = server();
    with_endpoint.spec.storage.endpoint = Some("http://minio:9000".into());
    with_endpoint.meta_mut().name = Some("db1".into());
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::OK,
        serde_json::to_value(with_endpoint).expect("json"),
    )
    .await;
    let args = building.await.expect("task").expect("command");
    assert_eq!(
        args,
        [
            "search",
            "--archive",
            "s3://backups/db1",
            "--s3-endpoint",
            "http://minio:9000",
            "--from-gtid",
            "0-1-5000",
            "--time",
            "2026-11-23T09:59:59Z"
        ]
    );
}

#[tokio::test]
async fn find_runs_binlogd_find_on_the_servers_archive() {
    let (client, mut api) = client();
    let building = tokio::spawn(async move {
        plugin::find_command(
            client,
            "prod",
            "db1",
            &[
                "--kind".to_owned(),
                "drop".to_owned(),
                "--table".to_owned(),
                "shop.orders".to_owned(),
            ],
        )
        .await
    });
    let mut listed = server();
    listed.meta_mut().name = Some("db1".into());
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::OK,
        serde_json::to_value(listed).expect("json"),
    )
    .await;
    let args = building.await.expect("task").expect("command");
    assert_eq!(
        args,
        [
            "find",
            "--archive",
            "s3://backups/db1",
            "--kind",
            "drop",
            "--table",
            "shop.orders"
        ]
    );
}

fn server_list(names: &[&str]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let mut listed = server();
            listed.meta_mut().name = Some((*name).into());
            serde_json::to_value(listed).expect("json")
        })
        .collect();
    json!({"apiVersion": "binlogd.io/v1alpha1", "kind": "BinlogServerList", "metadata": {}, "items": items})
}

/// `status --svg FILE` with the namespace's only BinlogServer: `binlogd timeline --svg` on
/// its archive.
#[tokio::test]
async fn status_svg_draws_the_only_servers_archive() {
    let (client, mut api) = client();
    let building = tokio::spawn(async move {
        plugin::timeline_command(
            client,
            "prod",
            None,
            std::path::Path::new("db1.svg"),
            Some("0-1-5000"),
        )
        .await
    });
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers",
        "",
        StatusCode::OK,
        server_list(&["db1"]),
    )
    .await;
    let mut stored = server();
    stored.meta_mut().name = Some("db1".into());
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers/db1",
        "",
        StatusCode::OK,
        serde_json::to_value(stored).expect("json"),
    )
    .await;
    let args = building.await.expect("task").expect("command");
    assert_eq!(
        args,
        [
            "timeline",
            "--archive",
            "s3://backups/db1",
            "--svg",
            "db1.svg",
            "--from-gtid",
            "0-1-5000"
        ]
    );
}

/// With several BinlogServers, `--svg` asks which, naming them.
#[tokio::test]
async fn status_svg_with_several_servers_asks_which() {
    let (client, mut api) = client();
    let building = tokio::spawn(async move {
        plugin::timeline_command(client, "prod", None, std::path::Path::new("x.svg"), None).await
    });
    api.expect(
        Method::GET,
        "/apis/binlogd.io/v1alpha1/namespaces/prod/binlogservers",
        "",
        StatusCode::OK,
        server_list(&["db1", "db2"]),
    )
    .await;
    let err = building.await.expect("task").expect_err("ambiguous");
    assert!(matches!(err, PluginError::Usage(_)), "{err}");
    assert!(
        err.to_string().contains("say which with --from") && err.to_string().contains("db1, db2"),
        "{err}"
    );
}
