//! Against a real cluster: ignored here, where none can run. They create objects named
//! `binlogd-it-<pid>...` in the default namespace and delete them. With a kubeconfig pointing
//! at a disposable cluster (kind, k3d) that has the CRDs applied
//! (`kubectl apply -f deploy/crds/`) and no operator running:
//!
//! ```sh
//! cargo test -p binlogd-operator --test cluster -- --ignored
//! ```

use binlogd_operator::controller::{Context, reconcile_binlog_server};
use binlogd_operator::crd::{
    BinlogServer, BinlogServerSpec, Compression, SecretKeyRef, SourceSpec, StorageSpec,
};
use binlogd_operator::workloads::{spool_claim_name, spool_upload_job_name};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;

#[tokio::test]
#[ignore = "needs a Kubernetes cluster with the CRDs applied (see the module docs)"]
async fn a_binlog_server_becomes_a_statefulset_and_a_service_in_a_real_cluster() {
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let servers: Api<BinlogServer> = Api::default_namespaced(client.clone());
    let name = format!("binlogd-it-{}", std::process::id());
    let resource = BinlogServer::new(
        &name,
        BinlogServerSpec {
            source: SourceSpec {
                host: "db.invalid".into(),
                port: 3306,
                user: "repl".into(),
                password_secret: SecretKeyRef {
                    name: "missing".into(),
                    key: "password".into(),
                },
                tls: None,
                server_id: None,
            },
            storage: StorageSpec {
                bucket: "b".into(),
                prefix: "p".into(),
                region: None,
                endpoint: None,
                credentials_secret: None,
                service_account_name: None,
                sse_c_key_secret: None,
                compression: Compression::Zstd,
                checkpoint_interval_seconds: 1,
                retention: None,
            },
            semi_sync: false,
            spool: None,
            image: None,
            resources: None,
            node_selector: None,
            tolerations: None,
            serve: None,
            monitoring: None,
        },
    );
    let stored = servers
        .create(&PostParams::default(), &resource)
        .await
        .expect("created");
    let ctx = context(&client);
    // The first pass adds the finalizer, then applies the workloads.
    reconcile_binlog_server(Arc::new(stored), ctx.clone())
        .await
        .expect("reconciled");
    let set = Api::<StatefulSet>::default_namespaced(client.clone())
        .get(&name)
        .await
        .expect("the StatefulSet");
    assert_eq!(set.spec.replicas, Some(1));
    Api::<Service>::default_namespaced(client.clone())
        .get(&name)
        .await
        .expect("the Service");
    // Deleting it: the finalizer holds it while the pod stops and the spool's upload Job
    // runs. The Job cannot succeed here (no store), so once it exists the test clears up.
    servers
        .delete(&name, &DeleteParams::background())
        .await
        .expect("deleted");
    let jobs = Api::<Job>::default_namespaced(client.clone());
    let job_name = spool_upload_job_name(&name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let Some(server) = servers.get_opt(&name).await.expect("get") else {
            break; // never ran far enough to have a spool
        };
        if let Some(job) = jobs.get_opt(&job_name).await.expect("get the Job") {
            let args = job
                .spec
                .expect("spec")
                .template
                .spec
                .expect("pod")
                .containers[0]
                .args
                .clone()
                .expect("args");
            assert_eq!(args[0], "upload");
            jobs.delete(&job_name, &DeleteParams::background())
                .await
                .expect("delete the Job");
            Api::<PersistentVolumeClaim>::default_namespaced(client.clone())
                .delete(&spool_claim_name(&name), &DeleteParams::default())
                .await
                .expect("delete the spool's claim");
            servers
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": []}})),
                )
                .await
                .expect("remove the finalizer");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no upload Job in 180 s: {:?}",
            server.status
        );
        reconcile_binlog_server(Arc::new(server), ctx.clone())
            .await
            .expect("reconciled");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster with the CRDs applied (see the module docs)"]
async fn a_restore_waits_for_its_claim_then_creates_its_job_in_a_real_cluster() {
    use binlogd_operator::controller::reconcile_restore;
    use binlogd_operator::crd::{PointInTimeRestore, RestorePhase};
    use k8s_openapi::api::core::v1::Pod;
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let name = format!("binlogd-it-{}", std::process::id());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let restores: Api<PointInTimeRestore> = Api::default_namespaced(client.clone());
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let claim = format!("{name}-data");
    claims
        .create(
            &PostParams::default(),
            &resource(serde_json::json!({
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}
            })),
        )
        .await
        .expect("the database's claim");
    // The database, still running on it.
    let database = format!("{name}-db");
    pods.create(
        &PostParams::default(),
        &resource(serde_json::json!({
            "metadata": {"name": database},
            "spec": {"containers": [{"name": "db", "image": "registry.k8s.io/pause:3.10",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}
        })),
    )
    .await
    .expect("the database's pod");
    restores
        .create(
            &PostParams::default(),
            &resource(serde_json::json!({
                "apiVersion": "binlogd.io/v1alpha1", "kind": "PointInTimeRestore",
                "metadata": {"name": name},
                "spec": {"storage": {"bucket": "b", "prefix": "p"},
                         "target": {"latest": true},
                         "database": {"pvcName": claim, "image": "mariadb:11.4"}}
            })),
        )
        .await
        .expect("the restore");
    let ctx = context(&client);
    let reconcile = || async {
        let current = restores.get(&name).await.expect("the restore");
        reconcile_restore(Arc::new(current), ctx.clone())
            .await
            .expect("reconciled");
        restores.get(&name).await.expect("the restore").status
    };
    let status = reconcile().await.expect("a status");
    assert_eq!(status.phase, Some(RestorePhase::Pending), "{status:?}");
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&database)),
        "{status:?}"
    );
    assert!(
        jobs.get_opt(&format!("{name}-restore"))
            .await
            .expect("get")
            .is_none()
    );

    // The database stopped: the Job starts.
    pods.delete(&database, &DeleteParams::default().grace_period(0))
        .await
        .expect("stop the database");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while pods.get_opt(&database).await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "the pod did not go");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let status = reconcile().await.expect("a status");
    assert_eq!(status.phase, Some(RestorePhase::Planning), "{status:?}");
    let job = jobs
        .get(&format!("{name}-restore"))
        .await
        .expect("the restore Job");
    let pod = job.spec.expect("spec").template.spec.expect("pod");
    assert_eq!(pod.containers[0].args.as_ref().expect("args")[0], "restore");

    // The Job goes with its restore (owner reference); the claim is ours to delete.
    restores
        .delete(&name, &DeleteParams::foreground())
        .await
        .expect("delete the restore");
    claims
        .delete(&claim, &DeleteParams::default())
        .await
        .expect("delete the claim");
}

/// A resource as `kubectl apply` would read it.
fn resource<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a resource")
}

/// The operator's context, as `binlogd-operator run` builds it, on `client`.
fn context(client: &kube::Client) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "binlogd-operator-it".into(),
                instance: None,
            },
        ),
        binlogd_image: "busybox".into(),
    })
}
