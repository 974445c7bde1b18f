//! `binlogd search` and `binlogd timeline` against ground truth from the server itself.
//!
//! The truth is what the server says of its own binlogs: `SHOW BINLOG EVENTS` gives each
//! transaction's GTID and byte range, `mariadb-binlog` the timestamp of its GTID event.
//! From it the tests work out, for start points and targets picked at random, exactly which
//! transactions a replay must apply, and check that the plan's byte ranges hold those and
//! no others, and that it stops where the target transaction ends.

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig, TcpProxy, Tool, find_tool};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use stream_common::{Archive, Random, Streamer, binlogd};

/// One transaction as the server records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tx {
    file: String,
    start: u64,
    end: u64,
    gtid: String,
    /// Its GTID event's timestamp, seconds since the Unix epoch.
    second: i64,
}

/// Every transaction in the server's binlogs, in binlog order.
fn server_transactions(db: &MariaDb) -> Vec<Tx> {
    let mut txs = Vec::new();
    for name in db.binlog_names().expect("names") {
        let times = gtid_event_times(&db.binlog_dir().join(&name));
        let rows = db
            .query_rows(&format!("SHOW BINLOG EVENTS IN '{name}'"))
            .expect("events");
        let mut open: Option<(Tx, bool)> = None;
        for row in rows {
            let [_, pos, kind, _, end, info] = &row[..] else {
                panic!("unexpected SHOW BINLOG EVENTS row {row:?}");
            };
            let pos: u64 = pos.parse().expect("pos");
            let end: u64 = end.parse().expect("end");
            if kind == "Gtid" {
                let gtid = info.split_whitespace().last().expect("gtid").to_owned();
                let tx = Tx {
                    file: name.clone(),
                    start: pos,
                    end: 0,
                    second: times[&end],
                    gtid,
                };
                open = Some((tx, info.starts_with("BEGIN")));
                continue;
            }
            if let Some((tx, multi_event)) = &mut open {
                let ends = !*multi_event
                    || kind == "Xid"
                    || (kind == "Query" && (info == "COMMIT" || info == "ROLLBACK"));
                if ends {
                    tx.end = end;
                    txs.push(tx.clone());
                    open = None;
                }
            }
        }
    }
    txs
}

/// Timestamps of a file's GTID events by their end offset, from `mariadb-binlog` (in UTC).
fn gtid_event_times(path: &std::path::Path) -> HashMap<u64, i64> {
    let out = Command::new(find_tool(Tool::MariadbBinlog).expect("mariadb-binlog"))
        .arg("--no-defaults")
        .arg(path)
        .env("TZ", "UTC")
        .output()
        .expect("run mariadb-binlog");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // #251123  9:31:45 server id 1  end_log_pos 456 CRC32 0x0badf00d 	GTID 0-1-5 trans
        if !line.starts_with('#') || !line.contains("\tGTID ") {
            continue;
        }
        let fields: Vec<&str> = line[1..].split_whitespace().collect();
        let date = fields[0];
        let n = |range: std::ops::Range<usize>| date[range].parse::<i16>().expect("date");
        let mut hms = fields[1].split(':').map(|x| x.parse::<i8>().expect("time"));
        let (h, m, s) = (
            hms.next().expect("h"),
            hms.next().expect("m"),
            hms.next().expect("s"),
        );
        let end: u64 = fields[fields
            .iter()
            .position(|f| *f == "end_log_pos")
            .expect("pos")
            + 1]
        .parse()
        .expect("end");
        let second = jiff::civil::date(2000 + n(0..2), n(2..4) as i8, n(4..6) as i8)
            .at(h, m, s, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .expect("zoned")
            .timestamp()
            .as_second();
        times.insert(end, second);
    }
    times
}

/// The MariaDB GTID position after `txs` (the last GTID per domain).
fn position_after(txs: &[Tx]) -> String {
    let mut last: std::collections::BTreeMap<u32, &str> = Default::default();
    for tx in txs {
        let domain = tx
            .gtid
            .split('-')
            .next()
            .expect("domain")
            .parse()
            .expect("n");
        last.insert(domain, &tx.gtid);
    }
    last.into_values().collect::<Vec<_>>().join(",")
}

/// Runs a binlogd reading command with `--output json`; the parsed output, or stderr.
fn run_json(args: &[&str]) -> Result<Value, String> {
    let out = binlogd()
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run binlogd");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
        Ok(serde_json::from_slice(&out.stdout).expect("JSON"))
    } else {
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        Err(stderr)
    }
}

/// The transactions of `truth` that the plan's byte ranges hold, in plan order. `truth`
/// maps an epoch to its server's transactions.
fn planned<'a>(plan: &Value, truth: &'a HashMap<String, Vec<Tx>>) -> Vec<&'a Tx> {
    let mut found = Vec::new();
    for piece in plan["pieces"].as_array().expect("pieces") {
        let epoch = piece["epoch"].as_str().expect("epoch");
        let file = piece["file"].as_str().expect("file");
        let (start, end) = (
            piece["start"].as_u64().expect("start"),
            piece["end"].as_u64().expect("end"),
        );
        let inside: Vec<&Tx> = truth[epoch]
            .iter()
            .filter(|t| t.file == file && start <= t.start && t.end <= end)
            .collect();
        assert_eq!(
            inside.len() as u64,
            piece["transactions"].as_u64().expect("count"),
            "piece {piece}"
        );
        // A range never cuts a transaction.
        assert!(
            !truth[epoch]
                .iter()
                .any(|t| t.file == file && t.start < end && t.end > start && !inside.contains(&t)),
            "piece {piece} cuts a transaction"
        );
        found.extend(inside);
    }
    found
}

fn gtids(txs: &[&Tx]) -> Vec<String> {
    txs.iter().map(|t| t.gtid.clone()).collect()
}

fn rfc3339(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .expect("time")
        .to_string()
}

/// A workload over two GTID domains, spread over several seconds and binlog files.
fn two_domain_workload(db: &MariaDb, random: &mut Random) {
    db.sql(
        "CREATE DATABASE s; \
         CREATE TABLE s.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(300), n INT DEFAULT 0)",
    )
    .expect("schema");
    for round in 0..5 {
        let mut sql = String::new();
        for i in 0..40 {
            let domain = random.below(2);
            sql.push_str(&format!("SET SESSION gtid_domain_id = {domain};\n"));
            if i % 3 == 0 {
                sql.push_str(
                    "BEGIN; INSERT INTO s.t (v) VALUES (REPEAT('y', 200)); \
                     UPDATE s.t SET n = n + 1 ORDER BY id DESC LIMIT 3; COMMIT;\n",
                );
            } else {
                sql.push_str("INSERT INTO s.t (v) VALUES (REPEAT('x', 250));\n");
            }
        }
        db.sql(&sql).expect("workload");
        if round == 2 {
            db.rotate().expect("rotate");
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
}

#[test]
fn search_and_timeline_match_the_servers_own_account_with_two_gtid_domains() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 << 10),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("start");
    let mut random = Random::from_time();
    two_domain_workload(&db, &mut random);
    let archive = Archive::new();
    let streamer = Streamer::start(&db, &archive, &[]);
    archive.wait_caught_up(&db, Duration::from_secs(60));
    let txs = server_transactions(&db);
    assert!(
        db.binlog_names().expect("names").len() >= 4,
        "several files"
    );
    assert!(txs.len() > 200);
    let truth: HashMap<String, Vec<Tx>> = [("0001-server1".to_owned(), txs.clone())].into();
    let path = archive.path().display().to_string();
    let base = ["--archive", path.as_str()];

    for _ in 0..12 {
        let k = random.below(txs.len() as u64 - 2) as usize;
        let m = k + 1 + random.below((txs.len() - k - 1) as u64) as usize;
        let start = position_after(&txs[..=k]);
        let expect = |range: std::ops::Range<usize>| -> Vec<String> {
            txs[range].iter().map(|t| t.gtid.clone()).collect()
        };
        let search = |target: &[&str]| {
            let mut args = vec!["search"];
            args.extend(base);
            args.extend(["--from-gtid", start.as_str()]);
            args.extend(target);
            run_json(&args)
        };
        let context = format!("start {start} (after #{k}), target #{m} {:?}", txs[m]);

        // --gtid: through the target transaction, stopping where it ends.
        let plan = search(&["--gtid", &txs[m].gtid]).expect("plan");
        assert_eq!(
            gtids(&planned(&plan, &truth)),
            expect(k + 1..m + 1),
            "{context}"
        );
        assert_eq!(plan["stop"]["offset"], txs[m].end, "{context}");
        assert_eq!(plan["stop"]["file"], txs[m].file.as_str(), "{context}");
        assert_eq!(plan["stop"]["gtid"], txs[m].gtid.as_str(), "{context}");
        assert_eq!(plan["target_reached"], true);
        let files_spanned = {
            let mut files: Vec<&str> = txs[k + 1..=m].iter().map(|t| t.file.as_str()).collect();
            files.dedup();
            files.len()
        };
        assert!(
            plan["indexes_read"].as_u64().expect("n") <= 2,
            "only the end files' indexes are read ({files_spanned} files): {context}"
        );

        // --before-gtid: the same, without the target.
        let plan = search(&["--before-gtid", &txs[m].gtid]).expect("plan");
        assert_eq!(
            gtids(&planned(&plan, &truth)),
            expect(k + 1..m),
            "{context}"
        );

        // --position: the target's end offset in its file.
        let position = format!("{}:{}", txs[m].file, txs[m].end);
        let plan = search(&["--position", &position]).expect("plan");
        assert_eq!(
            gtids(&planned(&plan, &truth)),
            expect(k + 1..m + 1),
            "{context}"
        );
        let inside = format!("{}:{}", txs[m].file, txs[m].start + 1);
        let err = search(&["--position", &inside]).expect_err("inside a transaction");
        assert!(err.contains("inside a transaction"), "{err}");

        // --time: up to the first transaction after the start committed later.
        let limit = txs[m].second;
        // On the second (a commit at T is kept) or just after it.
        let fraction = if random.below(2) == 0 { 0 } else { 500_000 };
        let time = rfc3339(limit * 1_000_000 + fraction);
        let result = search(&["--time", &time]);
        if txs[..=k].iter().any(|t| t.second > limit) {
            let err = result.expect_err("the start holds later commits");
            assert!(err.contains("before the start point"), "{context}: {err}");
        } else {
            let stop = txs[k + 1..]
                .iter()
                .position(|t| t.second > limit)
                .map_or(txs.len(), |p| k + 1 + p);
            let plan = result.expect("plan");
            assert_eq!(
                gtids(&planned(&plan, &truth)),
                expect(k + 1..stop),
                "{context}"
            );
            assert_eq!(plan["target_reached"], stop < txs.len(), "{context}");
        }

        // --latest: everything after the start.
        let plan = search(&["--latest"]).expect("plan");
        assert_eq!(gtids(&planned(&plan, &truth)), expect(k + 1..txs.len()));

        // The timeline from the same start reaches the server's position.
        let mut args = vec!["timeline"];
        args.extend(base);
        args.extend(["--from-gtid", start.as_str()]);
        let timeline = run_json(&args).expect("timeline");
        assert_eq!(
            timeline["recoverable_to"]["gtids"],
            db.gtid_binlog_pos().expect("pos")
        );
        assert_eq!(
            timeline["last_recoverable_micros"],
            txs.last().expect("tx").second * 1_000_000
        );
        let history = timeline["history"].as_array().expect("history");
        assert_eq!(history.len(), 1, "{timeline}");
        assert_eq!(history[0]["transactions"], txs.len() - k - 1);
    }

    // A target the archive does not have, and one behind the start: one clear line each.
    let mut args = vec!["search"];
    args.extend(base);
    let err = run_json(&[&args[..], &["--gtid", "0-1-999999"]].concat()).expect_err("beyond");
    assert!(err.contains("is not in the archive"), "{err}");
    let last = &txs.last().expect("tx").gtid;
    let err = run_json(
        &[
            &args[..],
            &[
                "--from-gtid",
                &db.gtid_binlog_pos().expect("pos"),
                "--gtid",
                last,
            ],
        ]
        .concat(),
    )
    .expect_err("behind");
    assert!(err.contains("before the start point"), "{err}");
    // A malformed argument is a usage error (exit 2), with the example to follow.
    let out = binlogd()
        .args([&args[..], &["--time", "yesterday"]].concat())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a time with a zone (write it like 2026-11-23T10:00:00Z"),
        "{err}"
    );

    // Take a middle file out: a plan across it names the gap; the timeline shows it.
    streamer.stop();
    let epoch = &archive.epochs()[0];
    let names = db.binlog_names().expect("names");
    let gone = &names[1];
    std::fs::remove_file(epoch.join(gone)).expect("remove");
    std::fs::remove_file(epoch.join(format!("{gone}.index.jsonl"))).expect("remove index");
    let first_file_end = txs.iter().filter(|t| t.file == names[0]).count();
    let start = position_after(&txs[..1]);
    let err =
        run_json(&[&args[..], &["--from-gtid", &start, "--latest"]].concat()).expect_err("gap");
    assert!(
        err.contains("transactions are missing before") && err.contains(&names[2]),
        "{err}"
    );
    let timeline =
        run_json(&["timeline", "--archive", &path, "--from-gtid", &start]).expect("timeline");
    assert_eq!(
        timeline["recoverable_to"]["gtids"],
        position_after(&txs[..first_file_end])
    );
    let kinds: Vec<&str> = timeline["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["stretch", "gap", "stretch"], "{timeline}");
}

#[test]
fn search_and_timeline_follow_a_primary_switch() {
    // log_slave_updates (off by default): the replica that gets promoted must have logged
    // the primary's transactions, as every promotable replica does.
    let config = |server_id| MariaDbConfig {
        server_id,
        max_binlog_size: Some(16 << 10),
        log_slave_updates: Some(true),
        ..MariaDbConfig::default()
    };
    let primary = config(1).start().expect("primary");
    let replica = config(2).start().expect("replica");
    replica.replicate_from(&primary).expect("replicate");
    primary.write_workload(150).expect("workload");
    let proxy = TcpProxy::start(primary.port()).expect("proxy");
    let source = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let archive = Archive::new();
    let streamer = Streamer::start_with(&primary, &archive, &[], &source);
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let switch_point = primary.gtid_binlog_pos().expect("pos");
    replica
        .wait_for_gtid(&switch_point, Duration::from_secs(60))
        .expect("replica caught up");
    replica.sql("STOP SLAVE; RESET SLAVE ALL").expect("promote");
    proxy.retarget(replica.port());
    std::thread::sleep(Duration::from_millis(1100));
    replica
        .write_workload(150)
        .expect("workload on the new primary");
    // Caught up with the new primary: its newest GTID is indexed.
    let newest = replica.gtid_binlog_pos().expect("pos");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !archive.indexes_all_of(std::slice::from_ref(&newest)) {
        assert!(std::time::Instant::now() < deadline, "{}", archive.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    streamer.stop();

    let old = server_transactions(&primary);
    let new = server_transactions(&replica);
    let truth: HashMap<String, Vec<Tx>> = [
        ("0001-server1".to_owned(), old.clone()),
        ("0002-server2".to_owned(), new.clone()),
    ]
    .into();
    // The history: the old primary's transactions, then what the new one wrote itself.
    let history: Vec<&Tx> = old
        .iter()
        .chain(new.iter().filter(|t| t.gtid.starts_with("0-2-")))
        .collect();
    let path = archive.path().display().to_string();
    let mut random = Random::from_time();
    for _ in 0..6 {
        let k = random.below(old.len() as u64 - 1) as usize;
        let start = position_after(&old[..=k]);
        let plan = run_json(&[
            "search",
            "--archive",
            &path,
            "--from-gtid",
            &start,
            "--latest",
        ])
        .expect("plan");
        assert_eq!(
            gtids(&planned(&plan, &truth)),
            gtids(&history[k + 1..]),
            "from {start}"
        );
        // A GTID target on the new primary, and a position in its epoch's files, which
        // have the same names as the old primary's.
        let m = old.len() + random.below((history.len() - old.len()) as u64) as usize;
        let target = history[m];
        let plan = run_json(&[
            "search",
            "--archive",
            &path,
            "--from-gtid",
            &start,
            "--gtid",
            &target.gtid,
        ])
        .expect("plan");
        assert_eq!(gtids(&planned(&plan, &truth)), gtids(&history[k + 1..=m]));
        assert_eq!(plan["stop"]["epoch"], "0002-server2");
        let position = format!("{}:{}", target.file, target.end);
        let err = run_json(&["search", "--archive", &path, "--position", &position]);
        if old.iter().any(|t| t.file == target.file) {
            let err = err.expect_err("ambiguous");
            assert!(err.contains("EPOCH/FILE:OFFSET"), "{err}");
        }
        let position = format!("0002-server2/{position}");
        let plan = run_json(&[
            "search",
            "--archive",
            &path,
            "--from-gtid",
            &start,
            "--position",
            &position,
        ])
        .expect("plan");
        assert_eq!(gtids(&planned(&plan, &truth)), gtids(&history[k + 1..=m]));
    }

    let timeline = run_json(&["timeline", "--archive", &path]).expect("timeline");
    assert_eq!(timeline["recoverable_to"]["gtids"], newest);
    let history_kinds: Vec<&str> = timeline["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        history_kinds,
        ["stretch", "server_change", "stretch"],
        "{timeline}"
    );
    let change = &timeline["history"][1];
    assert_eq!(change["to_server_id"], 2);
    assert_eq!(
        change["lost"], "",
        "a clean switchover loses nothing: {change}"
    );
}
