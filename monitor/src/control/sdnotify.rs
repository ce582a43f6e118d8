//! The systemd notification protocol (sd_notify(3)), spoken directly: no libsystemd.
//!
//! systemd passes `NOTIFY_SOCKET` to a `Type=notify` service: a filesystem path, or `@name` for
//! a socket in the abstract namespace. Each notification is one datagram of `KEY=VALUE` lines.
//! Outside systemd (`NOTIFY_SOCKET` unset) every function here does nothing and returns `Ok`.
//!
//! Under `NotifyAccess=main` systemd accepts notifications only from the main pid, so they must
//! be sent by the daemon process itself (any thread), not by a helper child.
use std::{
    io,
    os::unix::net::{SocketAddr, UnixDatagram},
    time::Duration,
};

use crate::clock;

/// A connection to the service manager's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for in `NOTIFY_SOCKET`, or `None` when not run by systemd.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => {
                let v = v
                    .into_string()
                    .map_err(|_| invalid("NOTIFY_SOCKET is not UTF-8".into()))?;
                Notifier::to(&v).map(Some)
            }
        }
    }

    /// A notifier sending to `address`: a path, or `@name` for the abstract namespace.
    pub fn to(address: &str) -> io::Result<Notifier> {
        let target = match address.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None if address.starts_with('/') => SocketAddr::from_pathname(address)?,
            None => {
                return Err(invalid(format!(
                    "NOTIFY_SOCKET {address:?} is neither an absolute path nor @name"
                )));
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            target,
        })
    }

    /// Send one notification (newline-separated `KEY=VALUE` assignments).
    pub fn send(&self, state: &str) -> io::Result<()> {
        let sent = self.socket.send_to_addr(state.as_bytes(), &self.target)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification truncated",
            ));
        }
        Ok(())
    }

    /// Start-up is complete: programs attached, socket listening.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1\nSTATUS=running")
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, text: &str) -> io::Result<()> {
        // One line: a newline would start another assignment.
        self.send(&format!("STATUS={}", text.replace('\n', " ")))
    }

    /// A reload (SIGHUP) has begun; send `ready()` when it is done. systemd 253+ wants the
    /// monotonic time with it, to tell this reload from an earlier one (Type=notify-reload).
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            clock::monotonic_ns() / 1000
        ))
    }

    /// Shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// Keep-alive for `WatchdogSec=`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Run `f` on the environment's notifier, if there is one.
fn with_env(f: impl FnOnce(&Notifier) -> io::Result<()>) -> io::Result<()> {
    match Notifier::from_env()? {
        Some(n) => f(&n),
        None => Ok(()),
    }
}

/// `READY=1` to `NOTIFY_SOCKET`; no-op outside systemd.
pub fn ready() -> io::Result<()> {
    with_env(Notifier::ready)
}

/// `STATUS=text`; no-op outside systemd.
pub fn status(text: &str) -> io::Result<()> {
    with_env(|n| n.status(text))
}

/// `RELOADING=1` with `MONOTONIC_USEC`; no-op outside systemd.
pub fn reloading() -> io::Result<()> {
    with_env(Notifier::reloading)
}

/// `STOPPING=1`; no-op outside systemd.
pub fn stopping() -> io::Result<()> {
    with_env(Notifier::stopping)
}

/// `WATCHDOG=1`; no-op outside systemd.
pub fn watchdog() -> io::Result<()> {
    with_env(Notifier::watchdog)
}

/// The watchdog timeout systemd set (`WatchdogSec=`), if it applies to this process. Ping
/// with [`watchdog`] at half of it or more often.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// WATCHDOG_USEC applies when WATCHDOG_PID is unset or names this process.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt as _;

    use super::*;

    fn listener() -> (UnixDatagram, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "relaywatch-sdnotify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (socket, path)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn notifications_reach_a_path_socket() {
        let (socket, path) = listener();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        n.ready().unwrap();
        assert_eq!(receive(&socket), "READY=1\nSTATUS=running");
        n.status("attached 4 programs\nsecond line").unwrap();
        assert_eq!(receive(&socket), "STATUS=attached 4 programs second line");
        n.stopping().unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
        n.watchdog().unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=1");

        let before = clock::monotonic_ns() / 1000;
        n.reloading().unwrap();
        let after = clock::monotonic_ns() / 1000;
        let msg = receive(&socket);
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{msg}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn notifications_reach_an_abstract_socket() {
        let name = format!("relaywatch-sdnotify-test-{}", std::process::id());
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::to(&format!("@{name}")).unwrap().ready().unwrap();
        assert_eq!(receive(&socket), "READY=1\nSTATUS=running");
    }

    #[test]
    fn sending_to_nobody_is_an_error_not_a_panic() {
        let n = Notifier::to("/nonexistent/relaywatch/notify").unwrap();
        assert!(n.ready().is_err());
        assert!(Notifier::to("relative/path").is_err());
    }

    #[test]
    fn environment_is_read() {
        // The only test touching NOTIFY_SOCKET (tests run in parallel threads of one process).
        let (socket, path) = listener();
        // SAFETY: no other thread of this test binary reads or writes NOTIFY_SOCKET.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        ready().unwrap(); // outside systemd: nothing to do
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        ready().unwrap();
        stopping().unwrap();
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert_eq!(receive(&socket), "READY=1\nSTATUS=running");
        assert_eq!(receive(&socket), "STOPPING=1");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn watchdog_interval_applies_to_its_pid_only() {
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
    }
}
