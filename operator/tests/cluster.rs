//! Against a real cluster: ignored here, where none can run. With a kubeconfig pointing
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
        },
    );
    let stored = servers
        .create(&PostParams::default(), &resource)
        .await
        .expect("created");
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "binlogd-operator-it".into(),
                instance: None,
            },
        ),
        binlogd_image: "busybox".into(),
    });
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
