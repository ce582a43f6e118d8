//! Who made a connection: a process's executable, arguments, parent, cgroup (service or
//! container) and user, from exec events the kernel reports (`table`), /proc while the process
//! lives (`reader`), and the cgroup2 tree for processes already gone (`cgroups`). Secrets in
//! command lines are redacted before anything else sees them (`redact`). `attribution` picks
//! the best of those sources for one connection event.
pub(crate) mod attribution;
pub(crate) mod cgroups;
pub(crate) mod reader;
pub(crate) mod redact;
pub(crate) mod table;

pub(crate) use reader::{ProcReader, ProcessDetails, UserNames, container_id, systemd_unit};
