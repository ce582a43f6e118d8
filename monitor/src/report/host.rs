//! The host every record is about.
use super::record::Host;

/// Host facts every record carries (ECS `host.*`, OCSF `device`).
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub id: Option<String>,
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let id = std::fs::read_to_string("/etc/machine-id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        HostInfo { name, id }
    }

    /// As the record's `host`.
    pub fn to_host(&self) -> Host {
        Host {
            name: self.name.clone(),
            id: self.id.clone(),
        }
    }
}
