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
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
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
    reconcile_binlog_server(Arc::new(stored), ctx)
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
    servers
        .delete(&name, &DeleteParams::foreground())
        .await
        .expect("deleted");
}
