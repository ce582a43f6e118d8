//! The host every alert is about.
/// Host facts every alert carries.
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
}
