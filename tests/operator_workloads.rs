//! The operator's workloads, run for real. No Kubernetes can run here, so this test plays
//! kubelet: it takes the pod specs the operator generates (a BinlogServer's StatefulSet, the
//! spool-upload Job of a deleted one, a PointInTimeRestore's Job), lays each pod's volumes
//! out in a temporary directory (Secrets as files of mode 0400, the ConfigMap, the claims,
//! emptyDirs), runs the containers' exact command lines and environment there (paths mapped
//! into that directory, the metrics port onto a free loopback one; a restore into MySQL in
//! MySQL's root filesystem, as in its image) against a real MariaDB or MySQL and a real S3
//! store, and reads the running binlogd back the way the operator does: its
//! `/healthz` probe, its `/metrics` for the BinlogServer's status, and its JSON log for the
//! restore's.

mod stream_common;

use binlogd_operator::crd::{BinlogServer, PointInTimeRestore};
use binlogd_operator::status::{read_metrics, read_restore_log};
use binlogd_operator::workloads::{binlog_server_statefulset, restore_job, spool_upload_job};
use binlogd_testkit::{BinlogSource, MariaDbConfig, MySql, MySqlConfig, S3Server};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stream_common::{http_get, wait_for_quiet_binlogs};

const CHECKSUM: &str = "CHECKSUM TABLE binlogd_test.workload";

/// A pod's file system: where its volumes are, and what its Secrets and ConfigMaps hold.
struct Pod {
    root: tempfile::TempDir,
    /// The root filesystem of the image the container runs (`chroot`), when it is not
    /// this machine's; the pod's files are laid out inside it.
    image: Option<PathBuf>,
    /// The user and group the containers run as (the pod's security context), if not root.
    run_as: Option<(u32, u32)>,
    /// Volume mount paths in the container, longest first.
    mounts: Vec<String>,
    /// The loopback address standing in for the pod's metrics port.
    metrics: String,
    /// The container's listening ports, each mapped to an address here.
    listens: BTreeMap<i32, String>,
}

impl Pod {
    /// Lays out `pod`'s volumes for `container`: Secrets and ConfigMaps written from
    /// `objects` (name → key → content), claims from `claims` (name → directory already
    /// filled), emptyDirs created empty. A StatefulSet's pod has volumes from its
    /// `templates` too (volume name → the claim made for pod 0).
    fn lay_out(
        pod: &PodSpec,
        container: &Container,
        templates: &BTreeMap<String, String>,
        objects: &BTreeMap<&str, BTreeMap<&str, String>>,
        claims: &BTreeMap<&str, PathBuf>,
    ) -> Pod {
        Pod::lay_out_in_image(pod, container, templates, objects, claims, None)
    }

    /// As [`Pod::lay_out`], for a container that runs `image` (a root filesystem, which
    /// the claims and the pod's files are inside).
    fn lay_out_in_image(
        pod: &PodSpec,
        container: &Container,
        templates: &BTreeMap<String, String>,
        objects: &BTreeMap<&str, BTreeMap<&str, String>>,
        claims: &BTreeMap<&str, PathBuf>,
        image: Option<&Path>,
    ) -> Pod {
        let root = match image {
            Some(image) => {
                let tmp = image.join("tmp");
                tempfile::tempdir_in(tmp).expect("pod root")
            }
            None => tempfile::tempdir().expect("pod root"),
        };
        let in_image = |path: &Path| -> PathBuf {
            match image {
                Some(image) => Path::new("/").join(
                    path.strip_prefix(image)
                        .expect("the claim is inside the image's root"),
                ),
                None => path.to_owned(),
            }
        };
        set_mode(root.path(), 0o755);
        let security = pod.security_context.clone().unwrap_or_default();
        let fs_group = security.fs_group.map(|g| g as u32);
        let run_as = security.run_as_user.map(|user| {
            let group = security.run_as_group.expect("runAsGroup with runAsUser") as u32;
            // kubelet would add fsGroup as a supplementary group; here it must be the same.
            assert_eq!(fs_group, Some(group), "fsGroup is not runAsGroup");
            (user as u32, group)
        });
        let mut mounts: Vec<String> = Vec::new();
        let volumes = pod.volumes.clone().unwrap_or_default();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = root.path().join(mount.mount_path.trim_start_matches('/'));
            let volume = volumes.iter().find(|v| v.name == mount.name);
            let claim = match volume {
                Some(volume) => volume
                    .persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone()),
                None => Some(
                    templates
                        .get(&mount.name)
                        .unwrap_or_else(|| panic!("mount {} names no volume", mount.name))
                        .clone(),
                ),
            };
            if let Some(claim) = claim {
                let data = claims
                    .get(claim.as_str())
                    .unwrap_or_else(|| panic!("no claim {claim}"));
                std::fs::create_dir_all(dir.parent().expect("parent")).expect("mkdir");
                std::fs::create_dir_all(data).expect("the claim's volume");
                std::os::unix::fs::symlink(in_image(data), &dir).expect("mount the claim");
                if let Some(group) = fs_group {
                    give_to_group(data, group);
                }
            } else {
                std::fs::create_dir_all(&dir).expect("mkdir");
                if volume.is_some_and(|v| v.empty_dir.is_some()) {
                    set_mode(&dir, 0o777);
                }
            }
            let Some(volume) = volume else {
                mounts.push(mount.mount_path.clone());
                continue;
            };
            let files = match (&volume.secret, &volume.config_map) {
                (Some(secret), None) => {
                    let name = secret.secret_name.as_deref().expect("secret name");
                    assert_eq!(secret.default_mode, Some(0o400), "secret {name}");
                    assert_eq!(mount.read_only, Some(true), "secret {name}");
                    Some((name, secret.items.clone().unwrap_or_default(), 0o400))
                }
                (None, Some(map)) => Some((
                    map.name.as_str(),
                    map.items.clone().unwrap_or_default(),
                    0o644,
                )),
                _ => None,
            };
            if let Some((name, items, mode)) = files {
                let object = objects
                    .get(name)
                    .unwrap_or_else(|| panic!("no Secret or ConfigMap {name}"));
                for item in items {
                    let path = dir.join(&item.path);
                    std::fs::write(&path, &object[item.key.as_str()]).expect("write");
                    // What kubelet does with fsGroup: the group owns the file and may read it.
                    let mode = match fs_group {
                        Some(group) => {
                            std::os::unix::fs::chown(&path, None, Some(group)).expect("chown");
                            mode | 0o440
                        }
                        None => mode,
                    };
                    set_mode(&path, mode);
                }
            }
            mounts.push(mount.mount_path.clone());
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        // Each port the container listens on, on a free port of this machine.
        let listens: BTreeMap<i32, String> = container
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .chain([binlogd_operator::workloads::METRICS_PORT])
            .map(|port| {
                let free = binlogd_testkit::free_port().expect("port");
                (port, format!("127.0.0.1:{free}"))
            })
            .collect();
        let metrics = listens[&binlogd_operator::workloads::METRICS_PORT].clone();
        Pod {
            root,
            image: image.map(Path::to_owned),
            run_as,
            mounts,
            metrics,
            listens,
        }
    }

    /// Where the container's port `port` listens here.
    fn address(&self, port: i32) -> &str {
        &self.listens[&port]
    }

    /// Where the container's `path` is here.
    fn path(&self, path: &str) -> PathBuf {
        self.root.path().join(path.trim_start_matches('/'))
    }

    /// An argument with the container's paths (also after `=`) and its listening
    /// address mapped here.
    fn map(&self, arg: &str) -> String {
        if let Some(port) = arg
            .strip_prefix("0.0.0.0:")
            .and_then(|p| p.parse::<i32>().ok())
            && let Some(address) = self.listens.get(&port)
        {
            return address.clone();
        }
        let (head, value) = match arg.rfind('=') {
            Some(at) if arg[at + 1..].starts_with('/') => arg.split_at(at + 1),
            _ => ("", arg),
        };
        let under_a_mount = self.mounts.iter().any(|m| {
            value == m
                || value
                    .strip_prefix(m.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if under_a_mount {
            let path = self.path(value);
            let seen = match &self.image {
                Some(image) => Path::new("/").join(path.strip_prefix(image).expect("inside")),
                None => path,
            };
            format!("{head}{}", seen.display())
        } else {
            arg.to_owned()
        }
    }

    /// The container's process: `program` (its command, or the image's binlogd; as the
    /// image sees it), its arguments and environment mapped, nothing inherited that could
    /// stand in for them.
    fn command(&self, container: &Container, program: &Path) -> Command {
        let mut command = match &self.image {
            // chroot needs root: it takes the pod's user itself.
            Some(image) => {
                let mut command = Command::new("chroot");
                if let Some((user, group)) = self.run_as {
                    command.arg(format!("--userspec={user}:{group}"));
                }
                command.arg(image).arg(program);
                command
            }
            None => {
                let mut command = Command::new(program);
                if let Some((user, group)) = self.run_as {
                    use std::os::unix::process::CommandExt;
                    command.uid(user).gid(group);
                }
                command
            }
        };
        command.args(container.args.iter().flatten().map(|a| self.map(a)));
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_PROFILE",
            "BINLOGD_SOURCE_PASSWORD",
        ] {
            command.env_remove(key);
        }
        // No ~/.aws of the machine's: the credentials are the mounted file's.
        command.env("HOME", self.root.path());
        for var in container.env.iter().flatten() {
            assert!(var.value_from.is_none(), "{} comes from a Secret", var.name);
            command.env(
                &var.name,
                self.map(var.value.as_deref().unwrap_or_default()),
            );
        }
        command
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What kubelet does to a volume for a pod's fsGroup: everything in it group-owned,
/// group-writable, directories setgid.
fn give_to_group(dir: &Path, group: u32) {
    std::os::unix::fs::chown(dir, None, Some(group)).expect("chown");
    let mode = std::fs::metadata(dir).expect("stat").permissions().mode();
    set_mode(dir, (mode | 0o2070) & 0o7777);
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            give_to_group(&path, group);
        } else {
            std::os::unix::fs::chown(&path, None, Some(group)).expect("chown");
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            set_mode(&path, (mode | 0o060) & 0o7777);
        }
    }
}

/// A StatefulSet's claim templates: volume name → the claim its pod 0 gets.
fn claims_of(set: &k8s_openapi::api::apps::v1::StatefulSet) -> BTreeMap<String, String> {
    let name = set.metadata.name.as_deref().expect("name");
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let volume = t.metadata.name.clone().expect("template name");
            let claim = format!("{volume}-{name}-0");
            (volume, claim)
        })
        .collect()
}

fn the_binlogd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlogd"))
}

fn sigterm(child: &mut Child, grace: Duration) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("not stopped within the pod's grace period of {grace:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The password of the account replicas log in to the serve container with.
const REPLICA_PASSWORD: &str = "replica-Secret-3";

/// The users-file lines for `replica`, as `binlogd serve-user` writes them.
fn replica_account() -> String {
    use std::io::Write;
    let mut child = Command::new(the_binlogd())
        .args(["serve-user", "replica"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve-user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{REPLICA_PASSWORD}\n").as_bytes())
        .expect("password");
    let output = child.wait_with_output().expect("serve-user");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn the_operators_pods_stream_to_s3_upload_and_restore_for_real() {
    let primary = MariaDbConfig {
        max_binlog_size: Some(64 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(100).expect("before the backup");
    let work = tempfile::tempdir().expect("work dir");
    let backup = primary.backup(&work.path().join("base")).expect("backup");
    primary.write_workload(100).expect("after the backup");
    let s3 = S3Server::start_from_env().expect("S3 server");
    s3.create_bucket("backups").expect("create the bucket");

    // What `kubectl apply` would have stored.
    let server: BinlogServer = serde_json::from_value(json!({
        "apiVersion": "binlogd.io/v1alpha1", "kind": "BinlogServer",
        "metadata": {"name": "db1", "namespace": "prod", "uid": "db1-uid"},
        "spec": {
            "source": {"host": "127.0.0.1", "port": primary.port(),
                       "user": binlogd_testkit::REPLICATION_USER,
                       "passwordSecret": {"name": "db1-repl", "key": "password"}},
            "storage": {"bucket": "backups", "prefix": "db1", "region": s3.region(),
                        "endpoint": s3.endpoint(), "compression": "zstd",
                        "checkpointIntervalSeconds": 1,
                        "credentialsSecret": {"name": "s3", "key": "credentials"}},
            "serve": {"usersSecret": {"name": "db1-replicas", "key": "users"}}
        }
    }))
    .expect("a BinlogServer");
    let objects = BTreeMap::from([
        (
            "db1-replicas",
            BTreeMap::from([("users", replica_account())]),
        ),
        (
            "db1-repl",
            BTreeMap::from([("password", primary.replication_password().to_owned() + "\n")]),
        ),
        (
            "s3",
            BTreeMap::from([(
                "credentials",
                format!(
                    "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    s3.access_key(),
                    s3.secret_key()
                ),
            )]),
        ),
        (
            "db1-config",
            BTreeMap::from([(
                "my.cnf",
                "[mariadbd]\ninnodb_buffer_pool_size = 64M\n".to_owned(),
            )]),
        ),
    ]);
    // The volumes behind the claims (as reachable as kubelet's mounts are).
    let volumes = tempfile::tempdir().expect("volumes");
    set_mode(volumes.path(), 0o755);
    let claims = BTreeMap::from([
        ("spool-db1-0", volumes.path().join("spool-db1-0")),
        ("data-db1-0", volumes.path().join("data-db1-0")),
    ]);

    // The BinlogServer's pod: binlogd stream, ready by its probe, its status from /metrics.
    let set = binlog_server_statefulset(&server).expect("StatefulSet");
    let templates = claims_of(&set);
    let pod_spec = set.spec.template.spec.expect("pod");
    let container = &pod_spec.containers[0];
    let stream_pod = Pod::lay_out(&pod_spec, container, &templates, &objects, &claims);
    let stream_log = work.path().join("stream.log");
    let mut stream = stream_pod
        .command(container, &the_binlogd())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stream_log).expect("log"))
        .spawn()
        .expect("start the stream container");
    let log = || std::fs::read_to_string(&stream_log).unwrap_or_default();
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|g| g.path.clone())
        .expect("an HTTP readiness probe");
    wait_for(Duration::from_secs(30), "the readiness probe", &log, || {
        std::net::TcpStream::connect(&stream_pod.metrics).is_ok()
            && http_get(&stream_pod.metrics, &probe).0 == 200
    });
    primary.write_workload(40).expect("while streaming");
    wait_for_quiet_binlogs(&primary);
    let moment = primary.gtid_binlog_pos().expect("pos");
    let checksum_at_moment = primary.query_value(CHECKSUM).expect("checksum");
    wait_for(
        Duration::from_secs(30),
        "the archive to catch up",
        &log,
        || {
            let reading = read_metrics(&http_get(&stream_pod.metrics, "/metrics").1);
            reading.last_gtid.as_deref() == Some(moment.as_str())
                && reading.upload_backlog_bytes == Some(0.0)
        },
    );
    let reading = read_metrics(&http_get(&stream_pod.metrics, "/metrics").1);
    assert!(reading.connected, "{reading:?}");

    // The serve container beside it: a replica replicates from the archive in the store.
    let serve_container = &pod_spec.containers[1];
    let serve_pod = Pod::lay_out(&pod_spec, serve_container, &templates, &objects, &claims);
    let serve_log = work.path().join("serve.log");
    let serving = stream_common::Reaped(
        serve_pod
            .command(serve_container, &the_binlogd())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).expect("log"))
            .spawn()
            .expect("start the serve container"),
    );
    let serve_log_text = || std::fs::read_to_string(&serve_log).unwrap_or_default();
    wait_for(
        Duration::from_secs(30),
        "serve's readiness probe",
        &serve_log_text,
        || {
            let metrics = serve_pod.address(binlogd_operator::workloads::SERVE_METRICS_PORT);
            std::net::TcpStream::connect(metrics).is_ok() && http_get(metrics, "/healthz").0 == 200
        },
    );
    let replica = MariaDbConfig {
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    let replication_port: u16 = serve_pod
        .address(3307)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    replica
        .replicate_from_port(replication_port, "replica", REPLICA_PASSWORD, "")
        .expect("CHANGE MASTER");
    if let Err(e) = replica.wait_for_gtid(&moment, Duration::from_secs(60)) {
        panic!("{e:#}\nserve:\n{}", serve_log_text());
    }
    assert_eq!(
        replica.query_value(CHECKSUM).expect("checksum"),
        checksum_at_moment
    );
    replica.sql("STOP SLAVE").expect("stop slave");
    drop(serving);
    assert!(reading.last_commit_seconds.is_some(), "{reading:?}");
    assert!(
        reading
            .source
            .as_deref()
            .is_some_and(|s| s.contains(&format!("127.0.0.1:{}", primary.port()))),
        "{reading:?}"
    );
    // More that the store does not get before the pod is killed (SIGKILL: no final upload).
    primary.write_workload(30).expect("after the moment");
    wait_for_quiet_binlogs(&primary);
    let newest = primary.gtid_binlog_pos().expect("pos");
    let grace = Duration::from_secs(
        pod_spec
            .termination_grace_period_seconds
            .expect("a grace period") as u64,
    );
    wait_for(
        Duration::from_secs(30),
        "the spool to have it all",
        &log,
        || {
            read_metrics(&http_get(&stream_pod.metrics, "/metrics").1)
                .last_gtid
                .as_deref()
                == Some(newest.as_str())
        },
    );
    let _ = stream.kill();
    let _ = stream.wait();
    // It ran as the image's user, not root, on the volume kubelet gave its group.
    let writer_id = claims["spool-db1-0"].join("spool/binlogd-writer-id");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&writer_id).expect("spooled")),
        binlogd_operator::workloads::BINLOGD_UID as u32
    );

    // The BinlogServer deleted: its spool's upload Job on the claim the pod left.
    let job = spool_upload_job(&server).expect("upload Job");
    let pod_spec = job.spec.expect("spec").template.spec.expect("pod");
    let container = &pod_spec.containers[0];
    let upload_pod = Pod::lay_out(&pod_spec, container, &BTreeMap::new(), &objects, &claims);
    let uploaded = upload_pod
        .command(container, &the_binlogd())
        .output()
        .expect("run the upload container");
    assert!(
        uploaded.status.success(),
        "{}{}",
        String::from_utf8_lossy(&uploaded.stdout),
        String::from_utf8_lossy(&uploaded.stderr)
    );
    assert!(
        String::from_utf8_lossy(&uploaded.stdout).contains("everything the spool holds"),
        "{}",
        String::from_utf8_lossy(&uploaded.stdout)
    );

    // A PointInTimeRestore of the database's volume, restored from the base backup, to
    // the moment: the Job's init container copies binlogd in, the database image's
    // server replays.
    backup
        .copy_back_to(&claims["data-db1-0"])
        .expect("copy back");
    // As on a database's volume: the files are the server's user's (999 in the official
    // images, the Job's user), not root's.
    let status = Command::new("chown")
        .args(["-R", "999:999"])
        .arg(&claims["data-db1-0"])
        .status()
        .expect("chown");
    assert!(status.success());
    let restore: PointInTimeRestore = serde_json::from_value(json!({
        "apiVersion": "binlogd.io/v1alpha1", "kind": "PointInTimeRestore",
        "metadata": {"name": "undo", "namespace": "prod", "uid": "undo-uid"},
        "spec": {
            "binlogServerRef": "db1",
            "target": {"toGtid": moment},
            "database": {"pvcName": "data-db1-0", "image": "mariadb:10.11",
                         "config": {"name": "db1-config", "key": "my.cnf"}},
            "parallelWorkers": 2,
            "staging": {"size": "1Gi"}
        }
    }))
    .expect("a PointInTimeRestore");
    let job = restore_job(&restore, &server.spec.storage, "binlogd:test").expect("Job");
    let pod_spec = job.spec.expect("spec").template.spec.expect("pod");
    let init = &pod_spec.init_containers.as_ref().expect("init")[0];
    let container = &pod_spec.containers[0];
    let restore_pod = Pod::lay_out(&pod_spec, container, &BTreeMap::new(), &objects, &claims);
    let copy = init.command.as_ref().expect("the copy command");
    assert_eq!(copy[0], "cp");
    std::fs::copy(the_binlogd(), restore_pod.path(&copy[2])).expect("copy binlogd in");
    let program = restore_pod.map(&container.command.as_ref().expect("command")[0]);
    let restored = restore_pod
        .command(container, Path::new(&program))
        .output()
        .expect("run the restore container");
    let stderr = String::from_utf8_lossy(&restored.stderr);
    if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
        let command = restore_pod.command(container, Path::new(&program));
        eprintln!("{command:?}\n{stderr}");
    }
    assert!(restored.status.success(), "{stderr}");
    // Not root: the server ran as the Job's user, not handed to one.
    assert!(!stderr.contains("--user="), "{stderr}");
    // --log-format json: every line a JSON object, as log collectors and the operator read it.
    for line in stderr.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line}"
        );
    }
    // What the operator reads from that log for the restore's status.
    let seen = read_restore_log(&stderr);
    let plan = seen.plan.as_ref().expect("a plan");
    assert_eq!(plan.target_gtid, moment);
    assert!(plan.files >= 1 && plan.transactions >= 40, "{plan:?}");
    assert!(seen.staged, "{stderr}");
    assert_eq!(
        seen.reached.as_ref().map(|(gtid, _)| gtid.as_str()),
        Some(moment.as_str())
    );
    assert_eq!(seen.progress().as_deref(), Some("100%"), "{stderr}");

    // The database, started on its volume, is the primary at the moment.
    let database = MariaDbConfig {
        server_id: 9,
        skip_log_bin: true,
        adopt_datadir: Some(claims["data-db1-0"].clone()),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("the database on its restored volume");
    assert_eq!(
        database.query_value(CHECKSUM).expect("checksum"),
        checksum_at_moment
    );
    drop(database);

    // And a stream pod stopped the way kubelet stops it (SIGTERM) exits cleanly within
    // its grace period, having uploaded what it spooled.
    let set = binlog_server_statefulset(&server).expect("StatefulSet");
    let templates = claims_of(&set);
    let pod_spec = set.spec.template.spec.expect("pod");
    let container = &pod_spec.containers[0];
    let stream_pod = Pod::lay_out(&pod_spec, container, &templates, &objects, &claims);
    let mut stream = stream_pod
        .command(container, &the_binlogd())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stream_log).expect("log"))
        .spawn()
        .expect("start the stream container again");
    wait_for(Duration::from_secs(30), "the readiness probe", &log, || {
        std::net::TcpStream::connect(&stream_pod.metrics).is_ok()
            && http_get(&stream_pod.metrics, &probe).0 == 200
    });
    let status = sigterm(&mut stream, grace);
    assert!(status.success(), "{status}\n{}", log());
}

fn wait_for(limit: Duration, what: &str, log: &dyn Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_restore_job_replays_into_a_mysql_image_from_a_clone_by_replication() {
    // MySQL's root filesystem stands in for the database image (`mysql:9.7`): the Job's
    // restore container runs there, binlogd copied in by the init container.
    let image = MySql::root_filesystem().expect("MySQL's root filesystem");
    let primary = MySqlConfig {
        max_binlog_size: Some(64 << 10),
        ..MySqlConfig::default()
    }
    .start()
    .expect("primary");
    primary.write_workload(100).expect("before the clone");
    let volumes = tempfile::tempdir_in(image.join("tmp")).expect("volumes");
    set_mode(volumes.path(), 0o755);
    let claims = BTreeMap::from([("data-db1-0", volumes.path().join("data-db1-0"))]);
    // The database's volume holds a CLONE of it, as a clone-based backup restores it.
    primary
        .clone_to(&claims["data-db1-0"])
        .expect("clone into the volume");
    // The server's user's, as on the database's volume.
    let status = Command::new("chown")
        .args(["-R", "999:999"])
        .arg(&claims["data-db1-0"])
        .status()
        .expect("chown");
    assert!(status.success());
    primary.write_workload(100).expect("after the clone");
    let moment = primary.gtid_executed().expect("gtids");
    let checksum_at_moment = primary.query_value(CHECKSUM).expect("checksum");
    primary.write_workload(30).expect("after the moment");

    // The archive the BinlogServer would have uploaded.
    let s3 = S3Server::start_from_env().expect("S3 server");
    s3.create_bucket("backups").expect("create the bucket");
    let spool = tempfile::tempdir().expect("spool");
    let streamed = Command::new(the_binlogd())
        .args(["stream", "--no-progress", "--exit-at-end", "--source"])
        .arg(primary.replication_url())
        .args(["--archive", "s3://backups/db1", "--spool-dir"])
        .arg(spool.path())
        .args(["--s3-endpoint", &s3.endpoint(), "--s3-region", s3.region()])
        .env("BINLOGD_SOURCE_PASSWORD", primary.replication_password())
        .envs(s3.aws_env())
        .output()
        .expect("run binlogd stream");
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );

    let storage: binlogd_operator::crd::StorageSpec = serde_json::from_value(json!({
        "bucket": "backups", "prefix": "db1", "region": s3.region(), "endpoint": s3.endpoint(),
        "credentialsSecret": {"name": "s3", "key": "credentials"}
    }))
    .expect("storage");
    let objects = BTreeMap::from([
        (
            "s3",
            BTreeMap::from([(
                "credentials",
                format!(
                    "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    s3.access_key(),
                    s3.secret_key()
                ),
            )]),
        ),
        (
            "db1-config",
            // The official image has secure_file_priv's folder; this root filesystem
            // (MySQL's core package only) does not, so the configuration turns it off.
            BTreeMap::from([(
                "my.cnf",
                "[mysqld]\ninnodb_buffer_pool_size = 64M\nsecure_file_priv = \"\"\n".to_owned(),
            )]),
        ),
    ]);
    let restore: PointInTimeRestore = serde_json::from_value(json!({
        "apiVersion": "binlogd.io/v1alpha1", "kind": "PointInTimeRestore",
        "metadata": {"name": "undo", "namespace": "prod", "uid": "undo-uid"},
        "spec": {
            "binlogServerRef": "db1",
            "target": {"toGtid": moment},
            "database": {"pvcName": "data-db1-0", "image": "mysql:9.7",
                         "config": {"name": "db1-config", "key": "my.cnf"}},
            "parallelWorkers": 2,
            // By replication from binlogd serve inside the Job, reading the S3 archive:
            // nothing staged (the MariaDB restore above stages relay logs).
            "method": "replication"
        }
    }))
    .expect("a PointInTimeRestore");
    let job = restore_job(&restore, &storage, "binlogd:test").expect("Job");
    let pod_spec = job.spec.expect("spec").template.spec.expect("pod");
    let init = &pod_spec.init_containers.as_ref().expect("init")[0];
    let container = &pod_spec.containers[0];
    let restore_pod = Pod::lay_out_in_image(
        &pod_spec,
        container,
        &BTreeMap::new(),
        &objects,
        &claims,
        Some(&image),
    );
    let copy = init.command.as_ref().expect("the copy command");
    std::fs::copy(the_binlogd(), restore_pod.path(&copy[2])).expect("copy binlogd in");
    let program = restore_pod.map(&container.command.as_ref().expect("command")[0]);
    let restored = restore_pod
        .command(container, Path::new(&program))
        .output()
        .expect("run the restore container");
    let stderr = String::from_utf8_lossy(&restored.stderr);
    assert!(restored.status.success(), "{stderr}");
    assert!(!stderr.contains("--user="), "not root: {stderr}");
    let seen = read_restore_log(&stderr);
    assert_eq!(
        seen.plan.as_ref().map(|plan| plan.target_gtid.as_str()),
        Some(moment.as_str())
    );
    assert!(seen.staged, "{stderr}");
    assert_eq!(
        seen.reached.as_ref().map(|(gtid, _)| gtid.as_str()),
        Some(moment.as_str())
    );
    assert_eq!(seen.progress().as_deref(), Some("100%"), "{stderr}");
    assert!(
        stderr.contains("a MySQL clone: starting from the server's own gtid_executed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("serving the archive to the server up to the target")
            && !stderr.contains("relay logs staged"),
        "by replication: {stderr}"
    );
    // The image has no CA bundle (nor need it, for an http:// endpoint): said, not fatal.
    assert!(
        stderr.contains("no CA certificates on this machine"),
        "{stderr}"
    );

    // The database, started on its volume, is the primary at the moment.
    let database = MySqlConfig {
        adopt_datadir: Some(claims["data-db1-0"].clone()),
        ..MySqlConfig::default()
    }
    .start()
    .expect("the database on its restored volume");
    assert_eq!(
        database.query_value(CHECKSUM).expect("checksum"),
        checksum_at_moment
    );
    assert_eq!(database.gtid_executed().expect("gtids"), moment);
}
