//! The binlogd Kubernetes operator: turns `BinlogServer` and `PointInTimeRestore` custom
//! resources into StatefulSets and Jobs running `binlogd`, and reports archive reach and
//! restore progress in their status.
//!
//! - [`crd`]: the resources' types, which are their schema.
//! - [`manifests`]: the CustomResourceDefinitions as the files in `deploy/crds/`.
//! - [`workloads`]: the StatefulSet, Service and Job a resource becomes.
//! - [`status`]: a BinlogServer's status from the running binlogd's `/metrics`.
//! - [`plugin`]: `kubectl binlogd` (status, restore, search).
//! - [`controller`]: the reconcilers that apply them and report status and Events.

pub mod controller;
pub mod crd;
pub mod manifests;
pub mod plugin;
pub mod status;
pub mod workloads;
