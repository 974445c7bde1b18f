//! Where the harness finds the external programs it runs, and what to say when one is missing.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Versions the test command installs; the harness refuses nothing else silently, it just
/// looks in the cache folder named after them.
pub const MOTO_VERSION: &str = "5.2.5";
/// Garage version built by `scripts/install-test-deps`.
pub const GARAGE_VERSION: &str = "2.5.0";

/// An external program the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The MariaDB server (`mariadb-server` package).
    Mariadbd,
    /// `mariadb-install-db` (`mariadb-server` package).
    MariadbInstallDb,
    /// The `mariadb` command-line client (`mariadb-client` package).
    MariadbClient,
    /// `mariadb-admin` (`mariadb-client` package).
    MariadbAdmin,
    /// `mariadb-binlog` (`mariadb-client` package).
    MariadbBinlog,
    /// `mariadb-backup` (`mariadb-backup` package).
    MariadbBackup,
    /// `sysbench` (`sysbench` package).
    Sysbench,
    /// The MySQL server (`mysql-server-core`, in MySQL 9.7's root filesystem).
    Mysqld,
    /// The `mysql` client (`mysql-client-core`, in MySQL 9.7's root filesystem).
    MysqlClient,
    /// `mysqladmin` (`mysql-client-core`, in MySQL 9.7's root filesystem).
    MysqlAdmin,
    /// `mysqlbinlog` (`mysql-client-core`, in MySQL 9.7's root filesystem).
    Mysqlbinlog,
    /// `moto_server` from PyPI `moto[server]`, in the harness's own virtualenv.
    MotoServer,
    /// Garage from crates.io, built once per machine into the tool cache.
    Garage,
    /// The Prometheus server (`prometheus` package).
    Prometheus,
    /// `promtool` (`prometheus` package).
    Promtool,
    /// `rsvg-convert`, which renders SVG to PNG (`librsvg2-bin` package).
    RsvgConvert,
}

impl Tool {
    pub(crate) fn program(self) -> &'static str {
        match self {
            Tool::Mariadbd => "mariadbd",
            Tool::MariadbInstallDb => "mariadb-install-db",
            Tool::MariadbClient => "mariadb",
            Tool::MariadbAdmin => "mariadb-admin",
            Tool::MariadbBinlog => "mariadb-binlog",
            Tool::MariadbBackup => "mariadb-backup",
            Tool::Sysbench => "sysbench",
            Tool::Mysqld => "mysqld",
            Tool::MysqlClient => "mysql",
            Tool::MysqlAdmin => "mysqladmin",
            Tool::Mysqlbinlog => "mysqlbinlog",
            Tool::MotoServer => "moto_server",
            Tool::Garage => "garage",
            Tool::Prometheus => "prometheus",
            Tool::Promtool => "promtool",
            Tool::RsvgConvert => "rsvg-convert",
        }
    }

    /// Environment variable that overrides where the tool is found.
    fn env_override(self) -> Option<&'static str> {
        match self {
            Tool::MotoServer => Some("BINLOGD_MOTO_SERVER"),
            Tool::Garage => Some("BINLOGD_GARAGE"),
            _ => None,
        }
    }
}

/// The folder where `scripts/install-test-deps` keeps tools that are not Debian packages.
pub fn tool_cache() -> PathBuf {
    if let Some(dir) = env::var_os("BINLOGD_TOOL_CACHE") {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/binlogd-tools")
}

/// Finds `tool`, or fails with the command that installs it.
pub fn find_tool(tool: Tool) -> Result<PathBuf> {
    if let Some(var) = tool.env_override()
        && let Some(path) = env::var_os(var)
    {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return Ok(path);
        }
        bail!("{var}={} is not an executable file", path.display());
    }
    let cached = match tool {
        Tool::MotoServer => Some(tool_cache().join(format!("moto-{MOTO_VERSION}/bin/moto_server"))),
        Tool::Garage => Some(tool_cache().join(format!("garage-{GARAGE_VERSION}/bin/garage"))),
        _ => None,
    };
    if let Some(path) = cached {
        if is_executable(&path) {
            return Ok(path);
        }
        bail!(
            "{} not found at {}: run `scripts/install-test-deps` (or set {})",
            tool.program(),
            path.display(),
            tool.env_override().unwrap_or_default()
        );
    }
    let search = env::var_os("PATH").unwrap_or_default();
    let dirs = env::split_paths(&search).chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool.program());
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "{} not found: run `scripts/install-test-deps` (it runs `apt-get install -y \
         --no-install-recommends mariadb-server mariadb-client mariadb-backup sysbench`)",
        tool.program()
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
