//! The planner against small made-up archives: plans, targets, gaps and failovers.

use super::timeline::Event;
use super::*;
use crate::archive::FileState;
use crate::index::TransactionEntry;
use std::collections::HashMap;

/// An in-memory archive: files built from `(gtid, commit second)` lists.
#[derive(Default)]
struct Fixture {
    files: Vec<ArchiveFile>,
    indexes: HashMap<(String, String), FileIndex>,
}

const T0: u64 = 1_763_868_000_000_000;

fn at(second: u64) -> u64 {
    T0 + second * 1_000_000
}

impl Fixture {
    /// Adds a file; each transaction is 100 bytes, the first at offset 256.
    fn file(&mut self, epoch: &str, name: &str, before: &str, transactions: &[(&str, u64)]) {
        let mut index = FileIndex {
            gtids_before: Some(before.parse().expect("state")),
            ..FileIndex::default()
        };
        for (i, (gtid, second)) in transactions.iter().enumerate() {
            index.transactions.push(TransactionEntry {
                gtid: Some(gtid.parse().expect("gtid")),
                start: 256 + 100 * i as u64,
                end: 356 + 100 * i as u64,
                commit_micros: at(*second),
                exact_time: false,
                ddl: false,
                events: 4,
                repeated: false,
            });
        }
        let size = index.indexed_end() + 48;
        index.closed = Some((size, None));
        self.files.push(ArchiveFile {
            epoch: epoch.into(),
            name: name.into(),
            state: FileState::Closed,
            size,
            indexed_end: size,
            transactions: index.transactions.len() as u64,
            gtids_before: index.gtids_before.clone().unwrap_or_default(),
            gtids_after: index.gtids_after(),
            first_commit_micros: index.transactions.first().map(|t| t.commit_micros),
            last_commit_micros: index.transactions.last().map(|t| t.commit_micros),
            source_server_id: crate::archive::server_id_of_epoch(epoch),
        });
        self.indexes.insert((epoch.into(), name.into()), index);
    }

    fn plan(&self, start: Option<&str>, target: StopAt) -> Result<Plan, PlanError> {
        let start = start.map(|s| s.parse::<GtidState>().expect("start"));
        block_on(plan(&self.files, self, start.as_ref(), &target))
    }

    fn timeline(&self, start: Option<&str>) -> Timeline {
        let start = start.map(|s| s.parse::<GtidState>().expect("start"));
        block_on(timeline(&self.files, self, start.as_ref())).expect("timeline")
    }
}

impl IndexSource for Fixture {
    async fn file_index(&self, file: &ArchiveFile) -> Result<FileIndex, StorageError> {
        Ok(self.indexes[&(file.epoch.clone(), file.name.clone())].clone())
    }
}

fn block_on<T>(work: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(work)
}

/// Three files of one MariaDB server: 0-1-1..3, 0-1-4..6, 0-1-7..9, one per second.
fn three_files() -> Fixture {
    let mut f = Fixture::default();
    f.file(
        "0001-server1",
        "b.000001",
        "",
        &[("0-1-1", 1), ("0-1-2", 2), ("0-1-3", 3)],
    );
    f.file(
        "0001-server1",
        "b.000002",
        "0-1-3",
        &[("0-1-4", 4), ("0-1-5", 5), ("0-1-6", 6)],
    );
    f.file(
        "0001-server1",
        "b.000003",
        "0-1-6",
        &[("0-1-7", 7), ("0-1-8", 8), ("0-1-9", 9)],
    );
    f
}

fn ranges(plan: &Plan) -> Vec<(String, u64, u64)> {
    plan.pieces
        .iter()
        .map(|p| (p.file.clone(), p.start, p.end))
        .collect()
}

#[test]
fn a_gtid_target_takes_the_middle_whole_and_cuts_both_ends() {
    let f = three_files();
    let plan = f
        .plan(Some("0-1-2"), StopAt::Gtids("0-1-8".parse().expect("gtid")))
        .expect("plan");
    assert_eq!(
        ranges(&plan),
        [
            ("b.000001".into(), 456, 604),
            ("b.000002".into(), 4, 604),
            ("b.000003".into(), 4, 456),
        ]
    );
    assert_eq!(plan.transactions, 6);
    assert_eq!(plan.end.to_string(), "0-1-8");
    assert!(plan.target_reached);
    assert_eq!(
        plan.indexes_read, 2,
        "the middle file is decided from its summary"
    );
    let stop = plan.stop.expect("stop");
    assert_eq!((stop.file.as_str(), stop.offset), ("b.000003", 456));
    assert_eq!(stop.gtid, Some("0-1-8".parse().expect("gtid")));
}

#[test]
fn a_start_past_the_first_files_skips_them_unread() {
    let f = three_files();
    let plan = f.plan(Some("0-1-6"), StopAt::Latest).expect("plan");
    assert_eq!(ranges(&plan), [("b.000003".into(), 4, 604)]);
    assert_eq!(plan.indexes_read, 0);
    assert!(plan.pieces[0].whole_file);
    assert!(plan.target_reached);
}

#[test]
fn time_targets_stop_before_the_first_later_commit() {
    let f = three_files();
    let plan = f.plan(None, StopAt::Time(at(5) + 500_000)).expect("plan");
    assert_eq!(plan.end.to_string(), "0-1-5");
    assert_eq!(ranges(&plan).last().expect("piece").2, 456);
    // Beyond the archive: everything, and not reached.
    let plan = f.plan(None, StopAt::Time(at(60))).expect("plan");
    assert_eq!(plan.end.to_string(), "0-1-9");
    assert!(!plan.target_reached);
    // Behind the start.
    let err = f
        .plan(Some("0-1-5"), StopAt::Time(at(2)))
        .expect_err("before start");
    assert!(matches!(err, PlanError::TargetBeforeStart { .. }), "{err}");
    let err = f
        .plan(Some("0-1-4"), StopAt::Time(at(3)))
        .expect_err("before start");
    assert!(err.to_string().contains("0-1-4, committed"), "{err}");
}

#[test]
fn before_gtid_leaves_the_transaction_out() {
    let f = three_files();
    let plan = f
        .plan(
            Some("0-1-1"),
            StopAt::BeforeGtid("0-1-7".parse().expect("gtid")),
        )
        .expect("plan");
    assert_eq!(plan.end.to_string(), "0-1-6");
    assert_eq!(
        ranges(&plan),
        [("b.000001".into(), 356, 604), ("b.000002".into(), 4, 604)]
    );
    let err = f
        .plan(
            Some("0-1-7"),
            StopAt::BeforeGtid("0-1-7".parse().expect("gtid")),
        )
        .expect_err("held");
    assert!(matches!(err, PlanError::TargetBeforeStart { .. }), "{err}");
    let err = f
        .plan(None, StopAt::BeforeGtid("0-2-5".parse().expect("gtid")))
        .expect_err("other server");
    assert!(err.to_string().contains("straight to 0-1-5"), "{err}");
}

#[test]
fn positions_must_be_transaction_boundaries() {
    let f = three_files();
    let position = |offset| StopAt::Position {
        epoch: None,
        file: "b.000002".into(),
        offset,
    };
    let plan = f.plan(Some("0-1-1"), position(456)).expect("plan");
    assert_eq!(plan.end.to_string(), "0-1-5");
    let err = f.plan(Some("0-1-1"), position(400)).expect_err("inside");
    assert!(
        err.to_string().contains("boundaries are 356 and 456"),
        "{err}"
    );
    let err = f.plan(Some("0-1-1"), position(9999)).expect_err("beyond");
    assert!(
        err.to_string().contains("indexed up to offset 604"),
        "{err}"
    );
    let plan = f.plan(Some("0-1-1"), position(604)).expect("at the end");
    assert_eq!(plan.end.to_string(), "0-1-6");
}

#[test]
fn mariadb_gtid_targets_must_exist() {
    let f = three_files();
    let err = f
        .plan(None, StopAt::Gtids("0-2-5".parse().expect("gtid")))
        .expect_err("no such transaction");
    assert!(err.to_string().contains("no transaction 0-2-5"), "{err}");
    let err = f
        .plan(None, StopAt::Gtids("0-1-50".parse().expect("gtid")))
        .expect_err("beyond");
    assert!(matches!(err, PlanError::TargetNotInArchive { .. }), "{err}");
}

#[test]
fn a_missing_file_is_a_gap() {
    let mut f = three_files();
    f.files.remove(1);
    let err = f.plan(Some("0-1-1"), StopAt::Latest).expect_err("gap");
    assert!(
        err.to_string().contains("missing 0-1-4..6"),
        "names what is missing: {err}"
    );
    let timeline = f.timeline(Some("0-1-1"));
    assert_eq!(timeline.recoverable_to.to_string(), "0-1-3");
    assert_eq!(timeline.last_recoverable_micros, Some(at(3)));
    assert!(
        matches!(&timeline.history[..], [Event::Stretch(_), Event::Gap(gap), Event::Stretch(_)] if gap.missing == "0-1-4..6"),
        "{:?}",
        timeline.history
    );
    // A start after the gap is fine.
    let plan = f.plan(Some("0-1-6"), StopAt::Latest).expect("plan");
    assert_eq!(plan.transactions, 3);
}

#[test]
fn a_missing_file_before_an_empty_newest_file_is_a_gap() {
    let mut f = three_files();
    f.file("0001-server1", "b.000004", "0-1-9", &[]);
    f.files.remove(2);
    let err = f.plan(Some("0-1-1"), StopAt::Latest).expect_err("gap");
    assert!(
        err.to_string().contains("missing 0-1-7..9"),
        "names what is missing: {err}"
    );
}

/// The old primary wrote 0-1-1..6; the new one had only 0-1-1..4 when it took over and
/// wrote 0-2-5.. on: its binlog repeats 0-1-3..4 (replicated) and goes on.
fn failover() -> Fixture {
    let mut f = Fixture::default();
    f.file(
        "0001-server1",
        "b.000001",
        "",
        &[("0-1-1", 1), ("0-1-2", 2), ("0-1-3", 3)],
    );
    f.file(
        "0001-server1",
        "b.000002",
        "0-1-3",
        &[("0-1-4", 4), ("0-1-5", 5), ("0-1-6", 6)],
    );
    f.file(
        "0002-server2",
        "b.000001",
        "0-1-2",
        &[("0-1-3", 3), ("0-1-4", 4)],
    );
    f.file(
        "0002-server2",
        "b.000002",
        "0-1-4",
        &[("0-2-5", 8), ("0-2-6", 9)],
    );
    f
}

#[test]
fn a_failover_drops_what_the_new_primary_never_had() {
    let f = failover();
    let plan = f.plan(None, StopAt::Latest).expect("plan");
    assert_eq!(plan.end.to_string(), "0-2-6");
    assert_eq!(
        ranges(&plan),
        [
            ("b.000001".into(), 4, 604),
            ("b.000002".into(), 4, 356),
            ("b.000002".into(), 4, 504),
        ]
    );
    assert_eq!(plan.pieces[2].epoch, "0002-server2");
    assert_eq!(plan.transactions, 6);
    // A target among the lost transactions is not in the history that continued.
    let err = f
        .plan(None, StopAt::Gtids("0-1-6".parse().expect("gtid")))
        .expect_err("lost");
    assert!(matches!(err, PlanError::TargetNotInArchive { .. }), "{err}");

    let timeline = f.timeline(None);
    assert_eq!(timeline.recoverable_to.to_string(), "0-2-6");
    assert_eq!(timeline.last_recoverable_micros, Some(at(9)));
    match &timeline.history[..] {
        [
            Event::Stretch(_),
            Event::ServerChange {
                lost, to_server_id, ..
            },
            Event::Stretch(_),
        ] => {
            assert_eq!(lost, "0-1-5..6");
            assert_eq!(*to_server_id, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mysql_sets_across_a_failover() {
    let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let b = "4e11fa47-71ca-11e1-9e33-c80aa9429563";
    let mut f = Fixture::default();
    let g = |uuid: &str, n: u64| format!("{uuid}:{n}");
    f.file(
        "0001-server1",
        "b.000001",
        "",
        &[(&g(a, 1), 1), (&g(a, 2), 2)],
    );
    f.file(
        "0002-server2",
        "c.000001",
        &format!("{a}:1-2"),
        &[(&g(b, 1), 3), (&g(b, 2), 4)],
    );
    let plan = f
        .plan(
            Some(&format!("{a}:1")),
            StopAt::Gtids(format!("{b}:1").parse().expect("set")),
        )
        .expect("plan");
    assert_eq!(plan.end.to_string(), format!("{a}:1-2,{b}:1"));
    assert_eq!(
        ranges(&plan),
        [("b.000001".into(), 356, 504), ("c.000001".into(), 4, 356)]
    );
    let timeline = f.timeline(Some(&format!("{a}:1")));
    assert_eq!(
        timeline.recoverable_to.to_string(),
        format!("{a}:1-2,{b}:1-2")
    );
    assert!(
        matches!(&timeline.history[0], Event::Stretch(s) if s.transactions == 1),
        "{:?}",
        timeline.history
    );
}

/// The planner does no I/O: it names each index it needs, once, and resumes where it
/// stopped, here in the middle of a file after a gap (which must be recorded once).
#[test]
fn the_planner_asks_for_each_index_once_and_resumes_where_it_stopped() {
    let mut f = three_files();
    // b.000002 is missing.
    f.files.remove(1);
    // A start with another domain: neither file's list holds it, so both are partly
    // held and need their indexes.
    let start: GtidState = "1-1-5".parse().expect("start");
    let mut planner = Planner::for_timeline(&f.files, Some(&start)).expect("planner");
    let mut asked = Vec::new();
    while let Step::NeedIndex(i) = planner.step().expect("step") {
        assert!(!asked.contains(&i), "asked twice for file {i}");
        asked.push(i);
        let file = &f.files[i];
        planner.give_index(
            i,
            f.indexes[&(file.epoch.clone(), file.name.clone())].clone(),
        );
    }
    assert_eq!(asked, vec![0, 1]);
    let stepped = planner.into_timeline();
    let gaps = stepped
        .history
        .iter()
        .filter(|e| matches!(e, Event::Gap(_)))
        .count();
    assert_eq!(gaps, 1, "{:?}", stepped.history);
    assert_eq!(
        format!("{stepped:?}"),
        format!("{:?}", f.timeline(Some("1-1-5")))
    );
    assert_eq!(stepped.recoverable_to.to_string(), "0-1-3,1-1-5");
}
