//! Plaintext of TLS connections, read by uprobes on the TLS libraries' write (and read)
//! functions before encryption: the evidence that a request is an AI API call, whatever host it
//! goes to.
//!
//! Data model:
//! - A TLS connection is identified in the kernel by its owner process and the library's
//!   connection object: `TlsConnKey { tgid, conn }` where `conn` is the `SSL *` (OpenSSL),
//!   `gnutls_session_t` (GnuTLS) or `*tls.Conn` (Go). The kernel never learns the socket; the
//!   daemon pairs a request with the connection it belongs to (same process, the request's
//!   `Host` against the connection's SNI, then the thread, then the most recent).
//! - `TLS_CONNS` (LRU hash, [`TLS_CONNS_CAPACITY`]) holds a [`TlsConnState`] per connection
//!   whose first writes were read. Absent means "not read yet": the next write is copied. Once
//!   [`TLS_WRITES_CAPTURED`] writes or [`TLS_BYTES_CAPTURED`] bytes were copied the connection
//!   is done and every later write costs one lookup. A handshake on the same object (a new
//!   connection reusing a freed `SSL *`) removes the entry, so the reuse is read again.
//! - Each copied write is one [`TlsDataEvent`] on the ring buffer: the header and at most
//!   [`TLS_DATA_MAX`] bytes. The daemon joins a connection's writes in order (`index`), reads
//!   the request head from them, keeps only the API evidence, and drops the bytes.

/// Most plaintext bytes copied per write, and per connection.
pub const TLS_DATA_MAX: usize = 4096;
pub const TLS_BYTES_CAPTURED: u32 = 4096;
/// Writes copied per connection at most: Go's HTTP/2 client writes the connection preface,
/// the HEADERS frame and the body separately; Python's h11 writes head and body separately.
pub const TLS_WRITES_CAPTURED: u8 = 4;
/// Connections remembered at once (LRU); an evicted live connection is read again (harmless).
pub const TLS_CONNS_CAPACITY: u32 = 16_384;

/// `TlsDataHeader.library` (also the uprobe's attach cookie for the generic write program).
pub const TLS_LIB_OPENSSL: u8 = 1;
pub const TLS_LIB_GNUTLS: u8 = 2;
pub const TLS_LIB_GO: u8 = 3;

/// Attach cookie bit of the read programs: the function is `SSL_read_ex`-shaped (the count is
/// written through its fourth argument; the return value is 1 for success).
pub const TLS_COOKIE_READ_EX: u64 = 1 << 8;
/// Reads in flight at once (entry seen, return not yet), keyed by thread.
pub const TLS_READS_CAPACITY: u32 = 4096;

/// `TlsDataHeader.direction`: plaintext the process wrote (its request) or read (the answer).
pub const TLS_DIR_WRITE: u8 = 1;
pub const TLS_DIR_READ: u8 = 2;

/// Processes whose TLS plaintext is read at once (`TLS_SCOPED`, kept by the daemon).
pub const TLS_SCOPED_CAPACITY: u32 = 4096;
/// `TLS_SCOPED` values: the process is read; its next request wakes the daemon (cleared by
/// the kernel when it does).
pub const TLS_SCOPED_READ: u8 = 1;
pub const TLS_SCOPED_WAKE: u8 = 2;
/// Processes that started a TLS client connection and are not read yet
/// (`TLS_CLIENT_PENDING`, LRU).
pub const TLS_CLIENT_PENDING_CAPACITY: u32 = 4096;
/// A process not yet read asks the daemon at most this often (its `TlsClientEvent`s).
pub const TLS_CLIENT_ASK_GAP_NS: u64 = 250_000_000;
/// `gnutls_init`'s flag of a client session (GNUTLS_CLIENT).
pub const GNUTLS_CLIENT_FLAG: u64 = 1 << 1;

/// A process started a TLS client connection (`SSL_set_connect_state`, `gnutls_init` with
/// GNUTLS_CLIENT, Go's `(*Conn).clientHandshake`: functions servers never call) and its
/// plaintext is not read yet. Written with a wake-up: the daemon attaches the process's write
/// and read probes (only its own: a TLS server, or a client the daemon does not record, pays
/// nothing per call) before the handshake ends and the request is written.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsClientEvent {
    /// Always [`crate::event::EVENT_TLS_CLIENT`].
    pub kind: u32,
    pub tgid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds of the call.
    pub ts_boot_ns: u64,
    /// `TLS_LIB_*`.
    pub library: u8,
    pub _pad: [u8; 7],
}

/// Key of `TLS_CONNS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsConnKey {
    pub tgid: u32,
    pub _pad: u32,
    /// The library's connection object (user-space address).
    pub conn: u64,
}

/// Value of `TLS_CONNS`: what has been read of a connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsConnState {
    /// Plaintext bytes copied so far.
    pub copied: u32,
    /// Writes copied so far.
    pub writes: u8,
    /// Reads copied so far (the response head).
    pub reads: u8,
    pub _pad: [u8; 2],
}

impl TlsConnState {
    /// Whether the next write should still be copied.
    pub const fn wants_write(&self) -> bool {
        self.writes < TLS_WRITES_CAPTURED && self.copied < TLS_BYTES_CAPTURED
    }

    /// Whether the next read is the answer's head, to copy: the connection's request was
    /// copied (it is a client that spoke first) and no answer was read yet.
    pub const fn wants_read(&self) -> bool {
        self.writes > 0 && self.reads == 0
    }
}

/// Value of `TLS_READS` (keyed by pid_tgid): a read whose entry was seen, for its return.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsPendingRead {
    pub conn: u64,
    pub buf: u64,
    /// `SSL_read_ex`: where the byte count is written (0 otherwise).
    pub count_at: u64,
    pub library: u8,
    pub _pad: [u8; 7],
}

/// Header of a [`TlsDataEvent`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsDataHeader {
    /// Always [`crate::event::EVENT_TLS_DATA`].
    pub kind: u32,
    pub tgid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds of the call.
    pub ts_boot_ns: u64,
    /// The library's connection object (see [`TlsConnKey`]).
    pub conn: u64,
    pub tid: u32,
    pub uid: u32,
    /// Bytes copied into `data` (at most [`TLS_DATA_MAX`]).
    pub len: u32,
    /// Bytes the call asked to write (may exceed `len`).
    pub call_len: u32,
    /// `TLS_LIB_*`.
    pub library: u8,
    /// `TLS_DIR_*`.
    pub direction: u8,
    /// 0 for the connection's first copied write, 1 for the next...
    pub index: u8,
    pub _pad: [u8; 5],
}

/// A copied write (or read): header and data.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsDataEvent {
    pub header: TlsDataHeader,
    pub data: [u8; TLS_DATA_MAX],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_read_until_a_budget_is_spent() {
        let mut s = TlsConnState {
            copied: 0,
            writes: 0,
            reads: 0,
            _pad: [0; 2],
        };
        assert!(s.wants_write());
        s.writes = TLS_WRITES_CAPTURED;
        assert!(!s.wants_write());
        s.writes = 1;
        s.copied = TLS_BYTES_CAPTURED;
        assert!(!s.wants_write());
    }
}
