//! `binlogd timeline --svg` on a real archive with a failover and a gap: a primary and its
//! replica (MariaDB 10.11, defaults but for log_slave_updates, which a promotable replica
//! needs), a switch of the primary behind one address, and a file taken out of the first
//! server's history. The picture renders with `rsvg-convert` (librsvg, as Debian ships
//! it), and every figure written on it is the one `timeline --output json` gives.
//!
//! `BINLOGD_SAVE_TIMELINE_PNG=docs/timeline.png cargo nextest run --test timeline_svg`
//! keeps the rendered picture (the one the README shows).

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig, TcpProxy, Tool, find_tool};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use stream_common::{Archive, Streamer, binlogd};

/// Writes `batches` batches of `per_batch` transactions, a second apart, so that the
/// history spreads over the time axis as a real one does.
fn paced_workload(db: &MariaDb, batches: usize, per_batch: usize) {
    for batch in 0..batches {
        if batch > 0 {
            std::thread::sleep(Duration::from_millis(1000));
        }
        db.write_workload(per_batch).expect("workload");
    }
}

/// An archive of a primary switched over to its replica, with the first server's second
/// file gone: stretch, gap, stretch, failover, stretch.
fn archive_with_a_failover_and_a_gap() -> Archive {
    let config = |server_id| MariaDbConfig {
        server_id,
        max_binlog_size: Some(16 << 10),
        log_slave_updates: Some(true),
        ..MariaDbConfig::default()
    };
    let primary = config(1).start().expect("primary");
    let replica = config(2).start().expect("replica");
    replica.replicate_from(&primary).expect("replicate");
    let proxy = TcpProxy::start(primary.port()).expect("proxy");
    let source = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let archive = Archive::new();
    let streamer = Streamer::start_with(&primary, &archive, &[], &source);
    paced_workload(&primary, 5, 40);
    archive.wait_caught_up(&primary, Duration::from_secs(60));
    let switch_point = primary.gtid_binlog_pos().expect("pos");
    replica
        .wait_for_gtid(&switch_point, Duration::from_secs(60))
        .expect("replica caught up");
    replica.sql("STOP SLAVE; RESET SLAVE ALL").expect("promote");
    proxy.retarget(replica.port());
    std::thread::sleep(Duration::from_millis(1100));
    paced_workload(&replica, 3, 40);
    let newest = replica.gtid_binlog_pos().expect("pos");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !archive.indexes_all_of(std::slice::from_ref(&newest)) {
        assert!(std::time::Instant::now() < deadline, "{}", archive.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    streamer.stop();
    // A file lost from the first server's history (a disk, a hand, a bad purge).
    let names = primary.binlog_names().expect("names");
    assert!(names.len() >= 4, "the workload rotated only into {names:?}");
    let epoch = &archive.epochs()[0];
    let gone = &names[1];
    std::fs::remove_file(epoch.join(gone)).expect("remove");
    std::fs::remove_file(epoch.join(format!("{gone}.index.jsonl"))).expect("remove its index");
    archive
}

/// The words of every `<text>` of `svg`, unescaped.
fn svg_texts(svg: &str) -> Vec<String> {
    let text = regex::Regex::new(r"<text[^>]*>([^<]*)</text>").expect("regex");
    text.captures_iter(svg)
        .map(|c| {
            c[1].replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

/// What `format_micros` prints: RFC 3339 in UTC.
fn time(micros: &Value) -> String {
    let micros = micros.as_i64().expect("micros");
    jiff::Timestamp::from_microsecond(micros)
        .expect("a time")
        .to_string()
}

/// `binlogd timeline --output json --svg FILE ARGS`: the JSON, and the SVG's text.
fn timeline(archive: &Archive, svg: &Path, args: &[&str]) -> (Value, String) {
    let out = binlogd()
        .args(["timeline", "--output", "json", "--archive"])
        .arg(archive.path())
        .arg("--svg")
        .arg(svg)
        .args(args)
        .output()
        .expect("run binlogd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).expect("JSON");
    (json, std::fs::read_to_string(svg).expect("the SVG"))
}

/// Renders `svg` with rsvg-convert and returns the PNG's width and height.
fn render(svg: &Path, png: &Path) -> (u32, u32) {
    let rsvg = find_tool(Tool::RsvgConvert).expect("rsvg-convert (librsvg2-bin)");
    let out = std::process::Command::new(rsvg)
        .arg(svg)
        .arg("-o")
        .arg(png)
        .output()
        .expect("run rsvg-convert");
    assert!(
        out.status.success(),
        "rsvg-convert refused the picture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(png).expect("the PNG");
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    // A picture with bars and words, not an empty page.
    assert!(bytes.len() > 20_000, "a {} byte PNG", bytes.len());
    (be(16), be(20))
}

#[test]
fn the_picture_shows_the_failover_the_gap_and_the_recoverable_range_as_the_json_says() {
    let archive = archive_with_a_failover_and_a_gap();
    let work = tempfile::tempdir().expect("dir");
    let svg_path = work.path().join("timeline.svg");
    let (json, svg) = timeline(&archive, &svg_path, &[]);
    let history = json["history"].as_array().expect("history");
    let kinds: Vec<&str> = history
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["stretch", "gap", "stretch", "server_change", "stretch"],
        "{json}"
    );
    let texts = svg_texts(&svg);
    let has = |words: &str| texts.iter().any(|t| t == words);
    let has_containing = |words: &str| texts.iter().any(|t| t.contains(words));

    // The headline: the last recoverable time and state, as the JSON has them.
    let last = time(&json["last_recoverable_micros"]);
    let recoverable_to = json["recoverable_to"]["gtids"].as_str().expect("gtids");
    assert!(
        has(&format!(
            "Last recoverable time {last} (GTIDs {recoverable_to})"
        )),
        "{texts:#?}"
    );
    assert!(has(&format!("last recoverable {last}")), "{texts:#?}");
    assert!(has("From the archive's first transaction"), "{texts:#?}");
    // Each stretch: its lane, its bar's count, its line of figures.
    for stretch in history.iter().filter(|e| e["kind"] == "stretch") {
        let epoch = stretch["epoch"].as_str().expect("epoch");
        assert!(has(epoch), "no lane for {epoch}: {texts:#?}");
        assert!(
            has(&format!("{} transactions", stretch["transactions"])),
            "{stretch}: {texts:#?}"
        );
        let line = format!(
            "{epoch} (server {}): {}..{}, {} transactions, {} .. {}",
            stretch["source_server_id"],
            stretch["first_file"].as_str().expect("file"),
            stretch["last_file"].as_str().expect("file"),
            stretch["transactions"],
            time(&stretch["first_commit_micros"]),
            time(&stretch["last_commit_micros"])
        );
        assert!(has(&line), "no {line:?} in {texts:#?}");
    }
    // The gap: marked, and what is missing named.
    let gap = &history[1];
    assert!(has("GAP"), "{texts:#?}");
    assert!(
        has(&format!(
            "GAP before {}/{}: missing {}",
            gap["epoch"].as_str().expect("epoch"),
            gap["file"].as_str().expect("file"),
            gap["missing"].as_str().expect("missing")
        )),
        "{gap}: {texts:#?}"
    );
    // The failover: marked, with the state the new server began with.
    let change = &history[3];
    assert!(
        has(&format!("failover to server {}", change["to_server_id"])),
        "{texts:#?}"
    );
    assert!(
        has_containing(&format!(
            "(server {}) at GTIDs {}",
            change["to_server_id"],
            change["at"]["gtids"].as_str().expect("gtids")
        )),
        "{change}: {texts:#?}"
    );
    assert!(has("recoverable"), "{texts:#?}");
    assert!(!has("backup"), "no backup was given: {texts:#?}");

    let png = work.path().join("timeline.png");
    let (width, height) = render(&svg_path, &png);
    assert_eq!(width, 1000);
    assert!(height > 300, "{width}x{height}");
    if let Ok(keep) = std::env::var("BINLOGD_SAVE_TIMELINE_PNG") {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join(keep);
        std::fs::copy(&png, &keep).expect("keep the PNG");
    }

    // From a backup taken after the gap: the backup is marked, and everything after it
    // is recoverable to the end.
    let third = &history[2];
    let start = third["from"]["gtids"].as_str().expect("gtids").to_owned();
    let (json, svg) = timeline(&archive, &svg_path, &["--from-gtid", &start]);
    let texts = svg_texts(&svg);
    let has = |words: &str| texts.iter().any(|t| t == words);
    assert!(has("backup"), "{texts:#?}");
    assert!(
        has(&format!(
            "From the backup at GTIDs {}",
            json["start"]["gtids"].as_str().expect("start")
        )),
        "{texts:#?}"
    );
    assert!(!has("GAP"), "the gap is before the backup: {texts:#?}");
    assert!(
        has(&format!(
            "last recoverable {}",
            time(&json["last_recoverable_micros"])
        )),
        "{texts:#?}"
    );
    render(&svg_path, &png);
}
