//! Where to put uprobes on the functions that carry TLS plaintext, read from an ELF file.
//!
//! Data model: one ELF file in, at most one [`TlsTargets`] out: which TLS stack the file carries
//! ([`TlsLibrary`]), and for each function worth probing a [`ProbeTarget`]: its name, its file
//! offset (what aya's `UProbeAttachLocation::AbsoluteOffset` and the kernel's uprobe API take),
//! and a [`ProbeKind`] saying what the kernel program finds in the registers there. The daemon
//! caches the answer per file (device, inode); nothing here keeps state.
//!
//! Three kinds of file are recognised, in this order:
//! - OpenSSL and BoringSSL: `libssl.so.*`, and executables that define the API themselves
//!   (`/usr/bin/node` bundles OpenSSL and exports `SSL_write` in `.dynsym`). Only *defined*
//!   function symbols count: curl merely imports `SSL_write` (through libcurl), so the probe belongs
//!   on libssl, not on curl. Symbols come from `.dynsym`, then `.symtab`; versioned names
//!   (`SSL_write@@OPENSSL_3.0.0`) are matched on the part before `@`, and when a name is defined
//!   under several versions the default one (not hidden in `.gnu.version`, or `@@`) wins.
//! - GnuTLS (`libgnutls.so.30`): `gnutls_record_send` / `gnutls_record_recv`, same argument
//!   layout as `SSL_write` / `SSL_read` (connection, buffer, length).
//! - Go executables, which carry their own `crypto/tls` and are usually stripped of `.symtab`:
//!   functions are found in the runtime's own table, `.gopclntab` (the section, named
//!   `.data.rel.ro.gopclntab` in PIE builds, or found by its magic number when the section headers
//!   are gone). Formats read: Go 1.18-1.19 (magic `0xfffffff0`) and Go 1.20+ (`0xfffffff1`), both
//!   with 32-bit entry offsets from the header's `textStart`, and Go 1.16-1.17 (`0xfffffffa`,
//!   absolute entry addresses). The header's `textStart` is used, not the `.text` section address:
//!   with external linking (cgo) the C start-up code precedes `runtime.text` inside `.text`.
//!   Older tables (`0xfffffffb`, Go 1.2-1.15) are recognised only to report the stack ABI.
//!
//! Registers the kernel program reads (the Go part). Go >= 1.17 on amd64 (>= 1.18 on arm64) passes
//! arguments in registers (ABIInternal); on amd64 the order is RAX, RBX, RCX, RDI, RSI, R8, R9,
//! R10, R11 (arm64: R0-R15). For `crypto/tls.(*Conn).Write(b []byte)`: receiver `*Conn` in RAX,
//! `b.ptr` in RBX, `b.len` in RCX, `b.cap` in RDI. For `(*Conn).writeRecordLocked(typ, data)`:
//! receiver RAX, `typ` (a uint8 record type) in BL, `data` in RCX/RDI/RSI. Go programs get entry
//! probes only: a uretprobe overwrites the return address on the goroutine stack, which the runtime
//! may copy when it grows, and the program then crashes. A binary built with a Go older than the
//! register ABI passes arguments on the stack, where the kernel program would read garbage: it
//! is reported as [`TargetError::GoStackAbi`], not as targets.
//!
//! File offsets: a symbol's virtual address is mapped through the executable `PT_LOAD` segment
//! that contains it (`p_offset + vaddr - p_vaddr`). That is the mapping the kernel itself uses, and
//! for every well-formed file it equals aya's section rule
//! (`UProbeAttachLocation::from_virtual_address`: `vaddr - sh_addr + sh_offset`); program headers
//! survive `strip` and `sstrip` where section headers may not.
//!
//! Hostile files: a local user can put any bytes at a path the daemon inspects, so nothing here
//! panics. The ELF tables are read through the `object` crate (bounds-checked, fuzzed upstream);
//! `.gopclntab` and `.go.buildinfo` are read by hand with checked arithmetic and every length
//! bounded by the slice it indexes. Work is bounded by the file size, which
//! [`find_targets_in_file`] caps at [`MAX_FILE_SIZE`].
use std::{
    fmt,
    fs::File,
    io::Read as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use object::{
    Endianness, elf,
    read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _, SectionTable, Sym as _},
};
use serde::Serialize;

/// Files larger than this are refused by [`find_targets_in_file`]. Node (100 MiB) and the largest
/// Go binaries seen in practice (Kubernetes tools, ~200 MiB) fit.
pub const MAX_FILE_SIZE: u64 = 512 << 20;

/// The TLS implementation a file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsLibrary {
    /// OpenSSL 1.1 / 3.x and BoringSSL (same `SSL_*` API), as a library or bundled.
    OpenSsl,
    /// GnuTLS 3.
    GnuTls,
    /// Go's `crypto/tls`, compiled into an executable.
    Go,
}

/// What a probe is for: where it sits (entry or return) and what the kernel program reads there.
/// C functions use the platform calling convention (x86-64: RDI, RSI, RDX, RCX for arguments 1-4,
/// RAX for the return value); Go functions use Go's register ABI (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Entry of `SSL_write(ssl, buf, num)` or `gnutls_record_send(session, data, len)`: the
    /// plaintext is `buf[..len]` (arguments 2 and 3), the connection is argument 1.
    Write,
    /// Entry of `SSL_write_ex(ssl, buf, num, *written)`: plaintext `buf[..num]`, as [`Self::Write`].
    WriteEx,
    /// Entry of `SSL_read(ssl, buf, num)` or `gnutls_record_recv(session, data, len)`: remember
    /// `buf` (argument 2) per thread for [`Self::ReadReturn`]; nothing is in it yet.
    Read,
    /// Return of the function of [`Self::Read`] (a uretprobe): a positive return value is the
    /// number of plaintext bytes now in the remembered buffer.
    ReadReturn,
    /// Entry of `SSL_read_ex(ssl, buf, num, *readbytes)`: remember `buf` and `readbytes`
    /// (arguments 2 and 4) per thread for [`Self::ReadExReturn`].
    ReadEx,
    /// Return of `SSL_read_ex`: on return value 1, `*readbytes` plaintext bytes are in `buf`.
    ReadExReturn,
    /// Entry of `SSL_do_handshake`, `SSL_connect` or `gnutls_handshake`: the connection in
    /// argument 1 is (re)starting; per-connection state keyed by it starts afresh.
    Handshake,
    /// Entry of `SSL_free` or `gnutls_deinit`: the connection in argument 1 is gone; drop its
    /// state (the address may be reused for the next connection).
    Free,
    /// Entry of `crypto/tls.(*Conn).Write`: receiver RAX, plaintext RBX (ptr) / RCX (len) on amd64.
    GoWrite,
    /// Entry of `crypto/tls.(*Conn).Read`: receiver RAX, buffer RBX / RCX. Entry only (no
    /// uretprobes in Go), so this marks a read on the connection, without its bytes.
    GoRead,
    /// Entry of `crypto/tls.(*Conn).writeRecordLocked`: receiver RAX, record type BL, record
    /// plaintext RCX (ptr) / RDI (len); sees handshake and application records alike.
    GoWriteRecord,
    /// Entry of `crypto/tls.(*Conn).handshakeContext` or `(*Conn).clientHandshake`: receiver RAX.
    GoHandshake,
    /// Entry of `crypto/tls.(*Conn).Close`: receiver RAX; drop the connection's state.
    GoClose,
    /// Entry of `SSL_set_connect_state(ssl)` or `gnutls_init(session, flags)` (a client when
    /// `flags` has GNUTLS_CLIENT): a TLS client connection starts. Servers never call these, so
    /// they are the probes every process gets; the others are attached per process.
    ClientStart,
    /// Entry of `crypto/tls.(*Conn).clientHandshake`: receiver RAX; as [`Self::ClientStart`].
    GoClientStart,
}

impl TlsLibrary {
    /// The name records and status use (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLibrary::OpenSsl => "openssl",
            TlsLibrary::GnuTls => "gnutls",
            TlsLibrary::Go => "go",
        }
    }
}

impl ProbeKind {
    /// Whether the probe is a uretprobe (attached with `UProbe` in return mode).
    pub fn is_return(self) -> bool {
        matches!(self, Self::ReadReturn | Self::ReadExReturn)
    }
}

/// One place to attach a uprobe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeTarget {
    /// The function's name (without an ELF version suffix), for logs and the attach record.
    pub symbol: String,
    /// The function's virtual address in the file (`st_value`, or the pclntab entry), for logs.
    pub address: u64,
    /// Offset of the function's first instruction in the file: the uprobe attach location.
    pub file_offset: u64,
    pub kind: ProbeKind,
}

/// Everything to probe in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsTargets {
    pub library: TlsLibrary,
    pub probes: Vec<ProbeTarget>,
    /// What is known of the version: the soname (`libssl.so.3`, `libgnutls.so.30`), the bundled
    /// OpenSSL's banner (`OpenSSL 3.0.19`) or the Go toolchain (`go1.19.8`).
    pub version: Option<String>,
}

/// Why a file could not be examined.
#[derive(Debug)]
pub enum TargetError {
    /// Opening or reading the file failed.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a directory).
    NotRegularFile { path: PathBuf },
    /// The file is larger than [`MAX_FILE_SIZE`].
    TooLarge { path: PathBuf, size: u64 },
    /// The file claims to be ELF (or Go) but its tables are inconsistent.
    Malformed(&'static str),
    /// A Go binary that uses `crypto/tls` but was built by a Go that passes arguments on the
    /// stack (before Go 1.17 on amd64, 1.18 on arm64): the kernel program cannot read them.
    GoStackAbi { version: String },
    /// A Go binary with a Go 1.16/1.17 pclntab and no readable version: which ABI it uses
    /// cannot be told.
    GoAbiUnknown,
    /// A Go binary for an architecture whose Go register ABI the kernel program does not read.
    GoUnsupportedArch { machine: u16 },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::NotRegularFile { path } => write!(f, "{}: not a regular file", path.display()),
            Self::TooLarge { path, size } => write!(
                f,
                "{}: {size} bytes, more than the {MAX_FILE_SIZE} bytes examined for TLS functions",
                path.display()
            ),
            Self::Malformed(what) => write!(f, "malformed ELF file: {what}"),
            Self::GoStackAbi { version } => write!(
                f,
                "Go binary built with {version}, which passes arguments on the stack; TLS \
                 plaintext is read from registers (Go 1.17+ on amd64, 1.18+ on arm64)"
            ),
            Self::GoAbiUnknown => f.write_str(
                "Go binary with a Go 1.16/1.17 function table and no readable build version: \
                 cannot tell whether it passes arguments in registers",
            ),
            Self::GoUnsupportedArch { machine } => write!(
                f,
                "Go binary for ELF machine {machine}: only amd64 and arm64 register ABIs are read"
            ),
        }
    }
}

impl std::error::Error for TargetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Whether a file name seen in /proc/PID/maps is a shared TLS library worth examining:
/// `libssl.so*` (OpenSSL, and BoringSSL builds that keep the name), `libgnutls.so*`, and
/// BoringSSL's `libboringssl.so*` (Android-style builds). NSS's `libssl3.so` is not OpenSSL.
pub fn is_tls_library_name(file_name: &str) -> bool {
    ["libssl.so", "libgnutls.so", "libboringssl.so"]
        .iter()
        .any(|stem| {
            file_name
                .strip_prefix(stem)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
}

/// Reads at most [`MAX_FILE_SIZE`] bytes of a regular file and examines them. The file is read,
/// not mapped: its owner could truncate a mapped file while it is parsed, and the daemon would
/// die of SIGBUS. It is opened non-blocking so that a FIFO put at the path cannot hang the caller.
pub fn find_targets_in_file(path: &Path) -> Result<Option<TlsTargets>, TargetError> {
    let io = |error| TargetError::Io {
        path: path.to_owned(),
        error,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(TargetError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(TargetError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    // The file may grow between fstat and read: read one byte more than allowed to notice.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(TargetError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    find_targets(&bytes)
}

/// Examines the bytes of an ELF file. `Ok(None)`: not a TLS library or binary this module
/// supports (not ELF, not 64-bit little-endian, not an executable or shared object, or no TLS
/// functions defined in it).
pub fn find_targets(elf: &[u8]) -> Result<Option<TlsTargets>, TargetError> {
    // ELF64 little-endian only: x86-64 and arm64, the architectures the kernel programs are built for.
    if elf.len() < 6 || elf[..4] != elf::ELFMAG || elf[4] != elf::ELFCLASS64 {
        return Ok(None);
    }
    if elf[5] != elf::ELFDATA2LSB {
        return Ok(None);
    }
    let data = AlignedBytes::new(elf);
    let data = data.as_slice();
    let header = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|_| TargetError::Malformed("ELF header"))?;
    let endian = header
        .endian()
        .map_err(|_| TargetError::Malformed("ELF header"))?;
    if !matches!(header.e_type(endian), elf::ET_EXEC | elf::ET_DYN) {
        return Ok(None);
    }
    let segments = load_segments(header, endian, data)?;
    let sections = header
        .sections(endian, data)
        .map_err(|_| TargetError::Malformed("section headers"))?;
    let file = Elf {
        data,
        endian,
        machine: header.e_machine(endian),
        sections,
        segments,
    };
    let symbols = file.defined_functions()?;
    if let Some(targets) = c_library_targets(&file, &symbols, &OPENSSL)? {
        return Ok(Some(targets));
    }
    if let Some(targets) = c_library_targets(&file, &symbols, &GNUTLS)? {
        return Ok(Some(targets));
    }
    go_targets(&file)
}

/// `object` reads ELF structures in place and insists on their natural alignment; a caller's
/// buffer (or a fuzzer's) need not start 8-aligned, so it is copied into one that does if not.
enum AlignedBytes<'a> {
    Borrowed(&'a [u8]),
    Copied(Vec<u64>, usize),
}

impl AlignedBytes<'_> {
    fn new(bytes: &[u8]) -> AlignedBytes<'_> {
        if bytes.as_ptr().align_offset(8) == 0 {
            return AlignedBytes::Borrowed(bytes);
        }
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        object::pod::bytes_of_slice_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes::Copied(words, bytes.len())
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Copied(words, len) => &object::pod::bytes_of_slice(words)[..*len],
        }
    }
}

/// A `PT_LOAD` segment's file-backed part.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    executable: bool,
}

struct Elf<'data> {
    data: &'data [u8],
    endian: Endianness,
    machine: u16,
    sections: SectionTable<'data, elf::FileHeader64<Endianness>, &'data [u8]>,
    segments: Vec<Segment>,
}

fn load_segments(
    header: &elf::FileHeader64<Endianness>,
    endian: Endianness,
    data: &[u8],
) -> Result<Vec<Segment>, TargetError> {
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|_| TargetError::Malformed("program headers"))?;
    Ok(phdrs
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| Segment {
            vaddr: p.p_vaddr(endian),
            offset: p.p_offset(endian),
            filesz: p.p_filesz(endian),
            executable: p.p_flags(endian) & elf::PF_X != 0,
        })
        .collect())
}

impl<'data> Elf<'data> {
    /// File offset of `vaddr`, through the `PT_LOAD` segment holding it in the file (an executable
    /// one when `executable`), if that offset lies inside the file.
    fn file_offset(&self, vaddr: u64, executable: bool) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.executable || !executable)
            .find_map(|s| {
                let delta = vaddr.checked_sub(s.vaddr)?;
                (delta < s.filesz).then_some(())?;
                let offset = s.offset.checked_add(delta)?;
                (offset < self.data.len() as u64).then_some(offset)
            })
    }

    /// `len` bytes of the file at virtual address `vaddr` (any loaded segment).
    fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&'data [u8]> {
        let start = usize::try_from(self.file_offset(vaddr, false)?).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    /// Contents of the first section whose name is `name` or ends with `.name` (Go's PIE builds
    /// say `.data.rel.ro.gopclntab`), unless it has no file contents.
    fn section_data(&self, name: &[u8]) -> Option<&'data [u8]> {
        self.sections.iter().find_map(|s| {
            let n = self.sections.section_name(self.endian, s).ok()?;
            let matches = n == name || n.strip_suffix(name).is_some_and(|p| p.ends_with(b"rel.ro"));
            if !matches || s.sh_type(self.endian) == elf::SHT_NOBITS {
                return None;
            }
            s.data(self.endian, self.data).ok()
        })
    }

    /// The `DT_SONAME` of a shared object.
    fn soname(&self) -> Option<String> {
        let (dyns, strings_index) = self.sections.dynamic(self.endian, self.data).ok()??;
        let strings = self
            .sections
            .strings(self.endian, self.data, strings_index)
            .ok()?;
        dyns.iter()
            .find(|d| d.d_tag.get(self.endian) == elf::DT_SONAME)
            .and_then(|d| {
                strings
                    .get(u32::try_from(d.d_val.get(self.endian)).ok()?)
                    .ok()
            })
            .filter(|name| name.len() <= 256)
            .map(|name| String::from_utf8_lossy(name).into_owned())
    }

    /// The defined function symbols whose names one of the C libraries' tables asks for, by base
    /// name (without `@version`), with their addresses.
    fn defined_functions(&self) -> Result<Vec<(&'static str, u64)>, TargetError> {
        // Per wanted name: (rank, address); a higher rank wins.
        let mut best: Vec<(&'static str, u8, u64)> = Vec::new();
        for (sh_type, from_dynsym) in [(elf::SHT_DYNSYM, true), (elf::SHT_SYMTAB, false)] {
            let table = self
                .sections
                .symbols(self.endian, self.data, sh_type)
                .map_err(|_| TargetError::Malformed("symbol table"))?;
            // A broken version table only costs the preference among versions, not the symbols.
            let versions = if from_dynsym {
                self.sections
                    .versions(self.endian, self.data)
                    .ok()
                    .flatten()
            } else {
                None
            };
            for (index, sym) in table.enumerate() {
                let shndx = sym.st_shndx(self.endian);
                if sym.st_type() != elf::STT_FUNC
                    || shndx == elf::SHN_UNDEF
                    || shndx == elf::SHN_ABS
                    || sym.st_value(self.endian) == 0
                {
                    continue;
                }
                let Ok(raw) = table.symbol_name(self.endian, sym) else {
                    continue;
                };
                let (base, default_version) = split_version(raw);
                let Some(wanted) = WANTED_C_SYMBOLS.iter().find(|w| w.as_bytes() == base) else {
                    continue;
                };
                let hidden = versions
                    .as_ref()
                    .is_some_and(|v| v.version_index(self.endian, index).is_hidden());
                let rank = u8::from(from_dynsym) * 2 + u8::from(default_version && !hidden);
                let address = sym.st_value(self.endian);
                match best.iter_mut().find(|(name, ..)| name == wanted) {
                    Some(entry) if entry.1 < rank => *entry = (wanted, rank, address),
                    Some(_) => {}
                    None => best.push((wanted, rank, address)),
                }
            }
        }
        Ok(best
            .into_iter()
            .map(|(name, _, addr)| (name, addr))
            .collect())
    }
}

/// `SSL_write@@OPENSSL_3.0.0` -> (`SSL_write`, default); `SSL_write@OPENSSL_1_1_0` -> not default.
fn split_version(name: &[u8]) -> (&[u8], bool) {
    match name.iter().position(|&b| b == b'@') {
        None => (name, true),
        Some(at) => (&name[..at], name.get(at + 1) == Some(&b'@')),
    }
}

/// One C library's API: which functions mark the library, and what each probe is for.
struct CLibrary {
    library: TlsLibrary,
    /// At least one of these must be defined for the file to count as this library.
    writers: &'static [&'static str],
    /// Function name and the probes it gets, in the order they are reported.
    probes: &'static [(&'static str, &'static [ProbeKind])],
}

const OPENSSL: CLibrary = CLibrary {
    library: TlsLibrary::OpenSsl,
    writers: &["SSL_write", "SSL_write_ex"],
    probes: &[
        ("SSL_write", &[ProbeKind::Write]),
        ("SSL_write_ex", &[ProbeKind::WriteEx]),
        ("SSL_read", &[ProbeKind::Read, ProbeKind::ReadReturn]),
        ("SSL_read_ex", &[ProbeKind::ReadEx, ProbeKind::ReadExReturn]),
        ("SSL_do_handshake", &[ProbeKind::Handshake]),
        ("SSL_connect", &[ProbeKind::Handshake]),
        ("SSL_free", &[ProbeKind::Free]),
        ("SSL_set_connect_state", &[ProbeKind::ClientStart]),
    ],
};

// gnutls_record_send is a thin wrapper of gnutls_record_send2 (exported too, rarely called
// directly): probing both would report each write twice, so only the common entry point is taken.
const GNUTLS: CLibrary = CLibrary {
    library: TlsLibrary::GnuTls,
    writers: &["gnutls_record_send"],
    probes: &[
        ("gnutls_record_send", &[ProbeKind::Write]),
        (
            "gnutls_record_recv",
            &[ProbeKind::Read, ProbeKind::ReadReturn],
        ),
        ("gnutls_handshake", &[ProbeKind::Handshake]),
        ("gnutls_deinit", &[ProbeKind::Free]),
        ("gnutls_init", &[ProbeKind::ClientStart]),
    ],
};

const WANTED_C_SYMBOLS: &[&str] = &[
    "SSL_write",
    "SSL_write_ex",
    "SSL_read",
    "SSL_read_ex",
    "SSL_do_handshake",
    "SSL_connect",
    "SSL_free",
    "SSL_set_connect_state",
    "gnutls_record_send",
    "gnutls_record_recv",
    "gnutls_handshake",
    "gnutls_deinit",
    "gnutls_init",
];

fn c_library_targets(
    file: &Elf<'_>,
    symbols: &[(&'static str, u64)],
    lib: &CLibrary,
) -> Result<Option<TlsTargets>, TargetError> {
    let address_of = |name: &str| symbols.iter().find(|(n, _)| *n == name).map(|&(_, a)| a);
    if !lib.writers.iter().any(|w| address_of(w).is_some()) {
        return Ok(None);
    }
    let mut probes = Vec::new();
    for (name, kinds) in lib.probes {
        let Some(address) = address_of(name) else {
            continue;
        };
        let file_offset = file
            .file_offset(address, true)
            .ok_or(TargetError::Malformed(
                "a TLS function's address is outside every executable segment",
            ))?;
        probes.extend(kinds.iter().map(|&kind| ProbeTarget {
            symbol: (*name).to_owned(),
            address,
            file_offset,
            kind,
        }));
    }
    let version = file.soname().or_else(|| match lib.library {
        TlsLibrary::OpenSsl => openssl_banner(file.data),
        _ => None,
    });
    Ok(Some(TlsTargets {
        library: lib.library,
        probes,
        version,
    }))
}

/// The version banner OpenSSL compiles in (`OpenSSL 3.0.19 27 Jan 2026`), shortened to
/// `OpenSSL 3.0.19`: what a bundling executable such as node offers instead of a soname.
fn openssl_banner(data: &[u8]) -> Option<String> {
    memchr::memmem::find_iter(data, b"OpenSSL ")
        .take(10_000)
        .find_map(|at| {
            let rest = data.get(at + 8..)?;
            let len = rest
                .iter()
                .take(32)
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
                .count();
            let token = &rest[..len];
            let looks_like_version = token.first().is_some_and(u8::is_ascii_digit)
                && token.get(1) == Some(&b'.')
                && token.get(2).is_some_and(u8::is_ascii_digit);
            looks_like_version.then(|| format!("OpenSSL {}", String::from_utf8_lossy(token)))
        })
}

// ---------------------------------------------------------------------------------------------
// Go

const GO_PROBES: &[(&str, ProbeKind)] = &[
    ("crypto/tls.(*Conn).Write", ProbeKind::GoWrite),
    ("crypto/tls.(*Conn).Read", ProbeKind::GoRead),
    (
        "crypto/tls.(*Conn).writeRecordLocked",
        ProbeKind::GoWriteRecord,
    ),
    (
        "crypto/tls.(*Conn).handshakeContext",
        ProbeKind::GoHandshake,
    ),
    (
        "crypto/tls.(*Conn).clientHandshake",
        ProbeKind::GoClientStart,
    ),
    ("crypto/tls.(*Conn).Close", ProbeKind::GoClose),
];
const GO_WRITE: &str = "crypto/tls.(*Conn).Write";

/// The pclntab layouts, by header magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PclnFormat {
    /// Go 1.2-1.15: recognised, not read (those Go versions pass arguments on the stack).
    Go12,
    /// Go 1.16-1.17: functab entries are absolute addresses.
    Go116,
    /// Go 1.18-1.19.
    Go118,
    /// Go 1.20 and later (same layout as 1.18, new magic).
    Go120,
}

impl PclnFormat {
    fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffb => Some(Self::Go12),
            0xffff_fffa => Some(Self::Go116),
            0xffff_fff0 => Some(Self::Go118),
            0xffff_fff1 => Some(Self::Go120),
            _ => None,
        }
    }
}

/// A parsed pclntab header (64-bit only: the ELF is 64-bit).
struct Pclntab<'data> {
    data: &'data [u8],
    format: PclnFormat,
    nfunc: usize,
    text_start: u64,
    funcname_offset: usize,
    pcln_offset: usize,
}

/// Longest function name read; Go's own are far shorter, a longer one is not one we look for.
const MAX_GO_NAME: usize = 4096;

impl<'data> Pclntab<'data> {
    fn parse(data: &'data [u8], text_section: Option<u64>) -> Result<Self, TargetError> {
        const BAD: TargetError = TargetError::Malformed("Go pclntab header");
        let magic = read_u32(data, 0).ok_or(BAD)?;
        let format = PclnFormat::from_magic(magic).ok_or(BAD)?;
        let (pad1, pad2, min_lc, ptr_size) = match data.get(4..8) {
            Some(&[a, b, c, d]) => (a, b, c, d),
            _ => return Err(BAD),
        };
        if pad1 != 0 || pad2 != 0 || !matches!(min_lc, 1 | 2 | 4) || ptr_size != 8 {
            return Err(BAD);
        }
        if format == PclnFormat::Go12 {
            return Ok(Self {
                data,
                format,
                nfunc: 0,
                text_start: 0,
                funcname_offset: 0,
                pcln_offset: 0,
            });
        }
        let word = |i: usize| read_u64(data, 8 + 8 * i).ok_or(BAD);
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| BAD);
        let nfunc = to_usize(word(0)?)?;
        let (text_start, funcname_offset, pcln_offset) = match format {
            PclnFormat::Go116 => (0, word(2)?, word(6)?),
            _ => {
                // The header's textStart is runtime.text; an unrelocated PIE could leave it 0, and
                // only then is the .text section address the best guess.
                let text = match word(2)? {
                    0 => text_section.ok_or(BAD)?,
                    t => t,
                };
                (text, word(3)?, word(7)?)
            }
        };
        let table = Self {
            data,
            format,
            nfunc,
            text_start,
            funcname_offset: to_usize(funcname_offset)?,
            pcln_offset: to_usize(pcln_offset)?,
        };
        // The functab (nfunc + 1 entries) must fit: bounds nfunc by the data, not by the header.
        let entries = nfunc.checked_add(1).ok_or(BAD)?;
        let end = entries
            .checked_mul(table.functab_entry_size())
            .and_then(|n| n.checked_add(table.pcln_offset))
            .ok_or(BAD)?;
        if end > data.len() || table.funcname_offset >= data.len() {
            return Err(BAD);
        }
        Ok(table)
    }

    fn functab_entry_size(&self) -> usize {
        match self.format {
            PclnFormat::Go116 => 16,
            _ => 8,
        }
    }

    /// Entry address and name of function `i` (`i < nfunc`).
    fn func(&self, i: usize) -> Option<(u64, &'data [u8])> {
        let entry_at = self
            .pcln_offset
            .checked_add(i.checked_mul(self.functab_entry_size())?)?;
        let (entry, funcoff, name_field) = match self.format {
            PclnFormat::Go116 => (
                read_u64(self.data, entry_at)?,
                read_u64(self.data, entry_at.checked_add(8)?)?,
                8,
            ),
            _ => (
                self.text_start
                    .checked_add(u64::from(read_u32(self.data, entry_at)?))?,
                u64::from(read_u32(self.data, entry_at.checked_add(4)?)?),
                4,
            ),
        };
        let func_at = self
            .pcln_offset
            .checked_add(usize::try_from(funcoff).ok()?)?;
        let name_off = read_u32(self.data, func_at.checked_add(name_field)?)?;
        let name_at = self
            .funcname_offset
            .checked_add(usize::try_from(name_off).ok()?)?;
        let tail = self.data.get(name_at..)?;
        let tail = &tail[..tail.len().min(MAX_GO_NAME)];
        let name = &tail[..memchr::memchr(0, tail)?];
        Some((entry, name))
    }

    /// The wanted functions' entry addresses, by name.
    fn find(&self, wanted: &[(&'static str, ProbeKind)]) -> Vec<(&'static str, ProbeKind, u64)> {
        let mut found: Vec<(&'static str, ProbeKind, u64)> = Vec::new();
        for i in 0..self.nfunc {
            let Some((entry, name)) = self.func(i) else {
                continue;
            };
            if !name.starts_with(b"crypto/tls.") {
                continue;
            }
            if let Some(&(n, kind)) = wanted.iter().find(|(n, _)| n.as_bytes() == name)
                && !found.iter().any(|&(f, ..)| f == n)
            {
                found.push((n, kind, entry));
            }
        }
        // Report in the table's order, whatever order the binary lists functions in.
        found.sort_by_key(|&(n, ..)| wanted.iter().position(|(w, _)| *w == n));
        found
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The pclntab: the section if there is one (a section that does not parse is an error); without
/// section headers, the first place in the file where a valid header starts (tried at each magic
/// number found, at most a few hundred).
fn find_pclntab<'data>(file: &Elf<'data>) -> Result<Option<Pclntab<'data>>, TargetError> {
    if !file.sections.is_empty() {
        let Some(data) = file.section_data(b".gopclntab") else {
            return Ok(None);
        };
        let text = file.sections.iter().find_map(|s| {
            (file.sections.section_name(file.endian, s).ok()? == b".text")
                .then(|| s.sh_addr(file.endian))
        });
        return Pclntab::parse(data, text).map(Some);
    }
    for magic in [0xffff_fff1u32, 0xffff_fff0, 0xffff_fffa, 0xffff_fffb] {
        let mut needle = magic.to_le_bytes().to_vec();
        needle.extend_from_slice(&[0, 0]);
        for at in memchr::memmem::find_iter(file.data, &needle).take(256) {
            let Ok(table) = Pclntab::parse(&file.data[at..], None) else {
                continue;
            };
            // A stray match parses only by luck; a real table names its functions.
            let plausible = table.format == PclnFormat::Go12
                || (table.nfunc > 0 && table.func(0).is_some_and(|(_, n)| !n.is_empty()));
            if plausible {
                return Ok(Some(table));
            }
        }
    }
    Ok(None)
}

fn go_targets(file: &Elf<'_>) -> Result<Option<TlsTargets>, TargetError> {
    let Some(table) = find_pclntab(file)? else {
        return Ok(None);
    };
    let version = go_version(file);
    if table.format == PclnFormat::Go12 {
        // Not read; the names are NUL-terminated strings in the table all the same.
        let uses_tls = memchr::memmem::find(table.data, b"\0crypto/tls.(*Conn).Write\0").is_some();
        if !uses_tls {
            return Ok(None);
        }
        return Err(TargetError::GoStackAbi {
            version: version.unwrap_or_else(|| "Go 1.15 or older".to_owned()),
        });
    }
    let found = table.find(GO_PROBES);
    if !found.iter().any(|&(n, ..)| n == GO_WRITE) {
        return Ok(None);
    }
    let register_abi_since = match file.machine {
        elf::EM_X86_64 => 17,
        elf::EM_AARCH64 => 18,
        machine => return Err(TargetError::GoUnsupportedArch { machine }),
    };
    match version.as_deref().and_then(go_minor_version) {
        Some(minor) if minor < register_abi_since => {
            return Err(TargetError::GoStackAbi {
                version: version.unwrap_or_default(),
            });
        }
        Some(_) => {}
        // 1.18+ tables imply the register ABI on both architectures; a 1.16/1.17 table does not.
        None if table.format == PclnFormat::Go116 => return Err(TargetError::GoAbiUnknown),
        None => {}
    }
    let mut probes = Vec::new();
    for (symbol, kind, address) in found {
        let file_offset = file
            .file_offset(address, true)
            .ok_or(TargetError::Malformed(
                "a Go TLS function's entry is outside every executable segment",
            ))?;
        probes.push(ProbeTarget {
            symbol: symbol.to_owned(),
            address,
            file_offset,
            kind,
        });
    }
    Ok(Some(TlsTargets {
        library: TlsLibrary::Go,
        probes,
        version,
    }))
}

/// `go1.19.8` -> 19; `devel go1.23-abcdef ...` -> 23; anything but Go 1.x -> None.
fn go_minor_version(version: &str) -> Option<u32> {
    let at = version.find("go1.")?;
    let digits: String = version[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(4)
        .collect();
    digits.parse().ok()
}

const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
const MAX_GO_VERSION: usize = 128;

/// The toolchain version recorded in `.go.buildinfo` (`go1.19.8`), if readable.
fn go_version(file: &Elf<'_>) -> Option<String> {
    let info = match file.section_data(b".go.buildinfo") {
        Some(info) => info,
        None => {
            let at = memchr::memmem::find(file.data, BUILDINFO_MAGIC)?;
            &file.data[at..]
        }
    };
    if !info.starts_with(BUILDINFO_MAGIC) {
        return None;
    }
    let ptr_size = usize::from(*info.get(14)?);
    let flags = *info.get(15)?;
    let version = if flags & 2 != 0 {
        // Go 1.18+: the version string follows the 32-byte header, length as a uvarint.
        let (len, used) = read_uvarint(info.get(32..)?)?;
        let len = usize::try_from(len).ok()?;
        let start = 32usize.checked_add(used)?;
        info.get(start..start.checked_add(len)?)?
    } else {
        // Before 1.18: a pointer to a Go string header (data pointer, length) elsewhere.
        if ptr_size != 8 || flags & 1 != 0 {
            return None;
        }
        let header_addr = read_u64(info, 16)?;
        let header = file.bytes_at(header_addr, 16)?;
        let data_addr = read_u64(header, 0)?;
        let len = usize::try_from(read_u64(header, 8)?).ok()?;
        file.bytes_at(data_addr, len.min(MAX_GO_VERSION + 1))?
    };
    if version.is_empty() || version.len() > MAX_GO_VERSION || !version.is_ascii() {
        return None;
    }
    Some(String::from_utf8_lossy(version).into_owned())
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tiny_elf;
