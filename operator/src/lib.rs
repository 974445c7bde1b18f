//! The binlogd Kubernetes operator: turns `BinlogServer` and `PointInTimeRestore` custom
//! resources into StatefulSets and Jobs running `binlogd`, and reports archive reach and
//! restore progress in their status.
//!
//! The implementation arrives with the operator issue; this crate holds its place in the
//! workspace so the crate graph in `ARCHITECTURE.md` is true from the start.
