//! S3-compatible object stores on loopback: `moto_server` and Garage.
//!
//! Two independent implementations, because S3 clients and stores disagree in small ways
//! (checksum headers, path-style addressing, conditional writes, SSE-C) and we want to find
//! those before users do:
//!
//! | | moto 5.2.5 | Garage 2.5.0 |
//! |---|---|---|
//! | `If-None-Match` conditional put | honoured | ignored |
//! | SSE-C | accepted, not enforced | enforced, data encrypted |
//!
//! Both are reached with path-style addressing at [`S3Server::endpoint`] with the static
//! credentials the instance reports. Each instance is empty; tests create their buckets
//! (the credentials may create buckets on both stores).

use std::fmt;
use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::process::{ChildGuard, free_port, wait_until};
use crate::reap::{new_instance_dir, record_server_pid};
use crate::tools::{Tool, find_tool};

/// Which S3-compatible server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// `moto_server` (PyPI `moto[server]`): quick to start, honours conditional puts.
    Moto,
    /// Garage (crates.io `garage`): a production store that enforces SSE-C.
    Garage,
}

impl S3Kind {
    /// The kind named by `BINLOGD_TEST_S3` (`moto` or `garage`); moto when unset.
    pub fn from_env() -> Result<S3Kind> {
        match std::env::var("BINLOGD_TEST_S3").as_deref() {
            Err(_) | Ok("") | Ok("moto") => Ok(S3Kind::Moto),
            Ok("garage") => Ok(S3Kind::Garage),
            Ok(other) => bail!("BINLOGD_TEST_S3={other}: expected `moto` or `garage`"),
        }
    }
}

impl fmt::Display for S3Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3Kind::Moto => "moto",
            S3Kind::Garage => "garage",
        })
    }
}

/// A running S3-compatible server. Dropping it kills the server and removes its data.
#[derive(Debug)]
pub struct S3Server {
    kind: S3Kind,
    port: u16,
    access_key: String,
    secret_key: String,
    region: String,
    _server: ChildGuard,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server chosen by `BINLOGD_TEST_S3` (see [`S3Kind::from_env`]).
    pub fn start_from_env() -> Result<S3Server> {
        S3Server::start(S3Kind::from_env()?)
    }

    /// Starts a server of the given kind on a free loopback port.
    pub fn start(kind: S3Kind) -> Result<S3Server> {
        let dir = new_instance_dir(&format!("s3-{kind}-"))?;
        match kind {
            S3Kind::Moto => start_moto(dir),
            S3Kind::Garage => start_garage(dir),
        }
    }

    /// Which implementation this is.
    pub fn kind(&self) -> S3Kind {
        self.kind
    }

    /// `http://127.0.0.1:PORT`, to be used with path-style addressing.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the credentials: new ones get the old ones' rights on `bucket`, and the
    /// old ones stop working — what a client sees when its credentials expire or are
    /// revoked. Garage only: moto accepts any credentials.
    pub fn rotate_credentials(&mut self, bucket: &str) -> Result<()> {
        ensure!(
            self.kind == S3Kind::Garage,
            "moto accepts any credentials: revoking them needs Garage (BINLOGD_TEST_S3=garage)"
        );
        let cli = garage_cli(
            find_tool(Tool::Garage)?,
            self.dir.path().join("garage.toml"),
        );
        // A bucket made through the S3 API has only its creator's local alias: find its id.
        let buckets = cli(&["bucket", "list"])?;
        let id = buckets
            .lines()
            .find(|line| line.contains(bucket))
            .and_then(|line| line.split_whitespace().next())
            .with_context(|| format!("no bucket {bucket} in:\n{buckets}"))?
            .to_owned();
        let access_key = format!("GK{}", random_hex(12)?);
        let secret_key = random_hex(32)?;
        let name = format!("binlogd-test-{}", &access_key[2..8]);
        cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            &name,
            &access_key,
            &secret_key,
        ])?;
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &id,
            "--key",
            &access_key,
        ])?;
        // The new key knows the bucket by the same name.
        cli(&["bucket", "alias", "--local", &access_key, &id, bucket])?;
        cli(&["key", "delete", "--yes", &self.access_key])?;
        self.access_key = access_key;
        self.secret_key = secret_key;
        Ok(())
    }

    /// The port its S3 API listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Access key id of the instance's credentials.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Secret key of the instance's credentials.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Region name the server signs with.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The instance's own directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An AWS SDK client for this server, signed with its credentials (path-style, as
    /// binlogd addresses a store given by endpoint).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let credentials = aws_sdk_s3::config::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "binlogd-testkit",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(credentials)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates `bucket` (from outside any async runtime).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(self.client().create_bucket().bucket(bucket).send())
            .with_context(|| format!("creating bucket {bucket}"))?;
        Ok(())
    }

    /// Puts a small object under each of `keys` in `bucket`, `parallel` at a time (from
    /// outside any async runtime): the bulk of an old archive, placed directly.
    pub fn put_many(&self, bucket: &str, keys: Vec<String>, parallel: usize) -> Result<()> {
        let client = self.client();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(async {
                let mut puts = tokio::task::JoinSet::new();
                for key in keys {
                    let client = client.clone();
                    let bucket = bucket.to_owned();
                    puts.spawn(async move {
                        client
                            .put_object()
                            .bucket(bucket)
                            .key(&key)
                            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"old"))
                            .send()
                            .await
                            .map(|_| ())
                            .with_context(|| format!("putting {key}"))
                    });
                    while puts.len() >= parallel.max(1) {
                        puts.join_next().await.context("a put")???;
                    }
                }
                while let Some(done) = puts.join_next().await {
                    done??;
                }
                Ok::<(), anyhow::Error>(())
            })
    }

    /// Every key under `prefix` in `bucket`, in key order (from outside any async
    /// runtime).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let client = self.client();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let mut keys = Vec::new();
                let mut token = None;
                loop {
                    let page = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token)
                        .send()
                        .await
                        .with_context(|| format!("listing {bucket}/{prefix}"))?;
                    keys.extend(
                        page.contents()
                            .iter()
                            .filter_map(|o| o.key().map(str::to_owned)),
                    );
                    token = page.next_continuation_token().map(str::to_owned);
                    if token.is_none() {
                        return Ok(keys);
                    }
                }
            })
    }

    /// The body of `key` in `bucket` (from outside any async runtime).
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let client = self.client();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let object = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .with_context(|| format!("getting {bucket}/{key}"))?;
                Ok(object
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("reading {bucket}/{key}"))?
                    .into_bytes()
                    .to_vec())
            })
    }

    /// Environment variables that point the AWS SDK's default chain at this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }
}

fn start_moto(dir: tempfile::TempDir) -> Result<S3Server> {
    let moto = find_tool(Tool::MotoServer)?;
    let port = free_port()?;
    let log = fs::File::create(dir.path().join("moto.log"))?;
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start moto_server")?;
    let mut server = ChildGuard::new(child, format!("moto_server on port {port}"));
    record_server_pid(dir.path(), server.pid())?;
    wait_until(&mut server, Duration::from_secs(60), "moto_server", || {
        Ok(port_open(port))
    })
    .with_context(|| log_tail(&dir.path().join("moto.log")))?;
    Ok(S3Server {
        kind: S3Kind::Moto,
        port,
        // moto accepts any credentials; these are only what the client signs with.
        access_key: "binlogd-test".to_owned(),
        secret_key: "binlogd-test-secret".to_owned(),
        region: "us-east-1".to_owned(),
        _server: server,
        dir,
    })
}

fn start_garage(dir: tempfile::TempDir) -> Result<S3Server> {
    let garage = find_tool(Tool::Garage)?;
    let root = dir.path();
    let (s3_port, rpc_port) = (free_port()?, free_port()?);
    let config_path = root.join("garage.toml");
    let config = format!(
        "metadata_dir = \"{meta}\"\n\
         data_dir = \"{data}\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_secret = \"{secret}\"\n\
         [s3_api]\n\
         s3_region = \"garage\"\n\
         api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
         root_domain = \".s3.garage.localhost\"\n",
        meta = root.join("meta").display(),
        data = root.join("data").display(),
        secret = random_hex(32)?,
    );
    fs::write(&config_path, config)?;
    // Garage refuses a config holding the RPC secret that others can read.
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600))?;

    let log = fs::File::create(root.join("garage.log"))?;
    let child = Command::new(&garage)
        .arg("-c")
        .arg(&config_path)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start garage server")?;
    let mut server = ChildGuard::new(child, format!("garage on port {s3_port}"));
    record_server_pid(root, server.pid())?;

    let cli = garage_cli(garage.clone(), config_path.clone());
    // `node id` answers from the local key before the RPC port listens; `status` needs
    // the RPC connection that the layout commands use.
    wait_until(&mut server, Duration::from_secs(60), "garage RPC", || {
        Ok(cli(&["status"]).is_ok())
    })
    .with_context(|| log_tail(&root.join("garage.log")))?;
    let node_id = cli(&["node", "id", "-q"])?
        .trim()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    ensure!(!node_id.is_empty(), "garage node id printed nothing");
    // A one-node cluster: give the node a role, then create static credentials.
    cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id])?;
    cli(&["layout", "apply", "--version", "1"])?;
    let access_key = format!("GK{}", random_hex(12)?);
    let secret_key = random_hex(32)?;
    cli(&[
        "key",
        "import",
        "--yes",
        "-n",
        "binlogd-test",
        &access_key,
        &secret_key,
    ])?;
    cli(&["key", "allow", "--create-bucket", "binlogd-test"])?;
    wait_until(
        &mut server,
        Duration::from_secs(30),
        "garage S3 API",
        || Ok(port_open(s3_port)),
    )?;
    Ok(S3Server {
        kind: S3Kind::Garage,
        port: s3_port,
        access_key,
        secret_key,
        region: "garage".to_owned(),
        _server: server,
        dir,
    })
}

/// Runs `garage -c CONFIG ARGS...`; its output, or an error with its stderr.
fn garage_cli(garage: PathBuf, config: PathBuf) -> impl Fn(&[&str]) -> Result<String> {
    move |args: &[&str]| {
        let output = Command::new(&garage)
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()?;
        ensure!(
            output.status.success(),
            "garage {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "log {}:\n{}",
        path.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}
