//! Real binaries of this machine (libssl, node, curl, GnuTLS, Go programs built on the spot)
//! checked against `nm` / `go tool nm` and against aya's own offset rule; hand-made ELF files for
//! the cases no installed binary shows; hostile bytes for the no-panic contract.
use std::{collections::HashMap, path::Path, process::Command};

use super::{
    tiny_elf::{TEXT_OFFSET, TinyElf, TinySym, buildinfo, pclntab},
    *,
};
use crate::testutil::TempDir;

const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const LIBGNUTLS: &str = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";
const LIBCURL: &str = "/usr/lib/x86_64-linux-gnu/libcurl.so.4";
const NSS_LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl3.so";
const LIBCRYPTO: &str = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3";
const NODE: &str = "/usr/bin/node";
const CURL: &str = "/usr/bin/curl";

const OPENSSL_NAMES: &[&str] = &[
    "SSL_write",
    "SSL_write_ex",
    "SSL_read",
    "SSL_read_ex",
    "SSL_do_handshake",
    "SSL_connect",
    "SSL_free",
    "SSL_set_connect_state",
];

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; the package providing it is part of the test machine (xtask setup)")
    })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (xtask setup installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nm`-style output (`ADDRESS TYPE NAME`) as name (version suffix dropped) -> address, text
/// symbols only.
fn nm_text_symbols(listing: &str) -> HashMap<String, u64> {
    listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.collect::<Vec<_>>().join(" ");
            matches!(kind, "T" | "t").then_some(())?;
            Some((name.split('@').next()?.to_owned(), addr))
        })
        .collect()
}

fn nm_dynamic(path: &str) -> HashMap<String, u64> {
    nm_text_symbols(&run(Command::new("nm").args([
        "-D",
        "--defined-only",
        path,
    ])))
}

/// aya's rule (`UProbeAttachLocation::from_virtual_address`, `resolve_symbol`): the offset
/// through the allocated section that contains the address.
fn section_rule_offset(data: &[u8], vaddr: u64) -> u64 {
    use object::read::elf::{FileHeader as _, SectionHeader as _};
    let header = elf::FileHeader64::<Endianness>::parse(data).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, data).unwrap();
    let s = sections
        .iter()
        .find(|s| {
            let addr = s.sh_addr(endian);
            s.sh_flags(endian) & u64::from(elf::SHF_ALLOC) != 0
                && s.sh_type(endian) != elf::SHT_NOBITS
                && addr <= vaddr
                && vaddr < addr + s.sh_size(endian)
        })
        .unwrap_or_else(|| panic!("no section holds {vaddr:#x}"));
    vaddr - s.sh_addr(endian) + s.sh_offset(endian)
}

/// Every probe's address is the symbol's, and its offset is aya's.
fn assert_matches_symbols(data: &[u8], targets: &TlsTargets, symbols: &HashMap<String, u64>) {
    for p in &targets.probes {
        let want = symbols
            .get(&p.symbol)
            .unwrap_or_else(|| panic!("{} is not in the symbol listing", p.symbol));
        assert_eq!(p.address, *want, "{}", p.symbol);
        assert_eq!(
            p.file_offset,
            section_rule_offset(data, p.address),
            "{}",
            p.symbol
        );
    }
}

fn probe_names(targets: &TlsTargets) -> Vec<(&str, ProbeKind)> {
    targets
        .probes
        .iter()
        .map(|p| (p.symbol.as_str(), p.kind))
        .collect()
}

#[test]
fn libssl3_every_probe_at_the_symbols_offset() {
    let data = read(LIBSSL);
    let targets = find_targets(&data).unwrap().expect("libssl is OpenSSL");
    assert_eq!(targets.library, TlsLibrary::OpenSsl);
    assert_eq!(targets.version.as_deref(), Some("libssl.so.3"));
    assert_eq!(
        probe_names(&targets),
        [
            ("SSL_write", ProbeKind::Write),
            ("SSL_write_ex", ProbeKind::WriteEx),
            ("SSL_read", ProbeKind::Read),
            ("SSL_read", ProbeKind::ReadReturn),
            ("SSL_read_ex", ProbeKind::ReadEx),
            ("SSL_read_ex", ProbeKind::ReadExReturn),
            ("SSL_do_handshake", ProbeKind::Handshake),
            ("SSL_connect", ProbeKind::Handshake),
            ("SSL_free", ProbeKind::Free),
            ("SSL_set_connect_state", ProbeKind::ClientStart),
        ]
    );
    assert_matches_symbols(&data, &targets, &nm_dynamic(LIBSSL));
    // The path reader gives the same answer.
    assert_eq!(
        find_targets_in_file(Path::new(LIBSSL)).unwrap(),
        Some(targets)
    );
}

#[test]
fn node_bundled_openssl_is_probed_in_the_executable() {
    let data = read(NODE);
    let targets = find_targets(&data)
        .unwrap()
        .expect("node exports SSL_write");
    assert_eq!(targets.library, TlsLibrary::OpenSsl);
    let version = targets.version.clone().unwrap();
    assert!(version.starts_with("OpenSSL 3."), "{version}");
    let names: Vec<&str> = targets.probes.iter().map(|p| p.symbol.as_str()).collect();
    for name in OPENSSL_NAMES {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert_matches_symbols(&data, &targets, &nm_dynamic(NODE));
}

#[test]
fn importers_and_other_libraries_are_not_targets() {
    // curl and libcurl import SSL_write; NSS's libssl3.so and libcrypto define none of it.
    for path in [CURL, LIBCURL, NSS_LIBSSL, LIBCRYPTO] {
        assert_eq!(find_targets(&read(path)).unwrap(), None, "{path}");
    }
}

#[test]
fn gnutls_record_functions() {
    let data = read(LIBGNUTLS);
    let targets = find_targets(&data).unwrap().expect("libgnutls is GnuTLS");
    assert_eq!(targets.library, TlsLibrary::GnuTls);
    assert_eq!(targets.version.as_deref(), Some("libgnutls.so.30"));
    assert_eq!(
        probe_names(&targets),
        [
            ("gnutls_record_send", ProbeKind::Write),
            ("gnutls_record_recv", ProbeKind::Read),
            ("gnutls_record_recv", ProbeKind::ReadReturn),
            ("gnutls_handshake", ProbeKind::Handshake),
            ("gnutls_deinit", ProbeKind::Free),
            ("gnutls_init", ProbeKind::ClientStart),
        ]
    );
    assert_matches_symbols(&data, &targets, &nm_dynamic(LIBGNUTLS));
}

#[test]
fn misaligned_buffer_gives_the_same_answer() {
    let data = read(LIBSSL);
    let mut shifted = vec![0u8; data.len() + 1];
    shifted[1..].copy_from_slice(&data);
    assert_eq!(
        find_targets(&shifted[1..]).unwrap(),
        find_targets(&data).unwrap()
    );
}

// --- Go, built here -------------------------------------------------------------------------

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"net/http"
)

func main() {
	resp, err := http.Get("https://example.invalid/")
	fmt.Println(resp, err)
}
"#;

/// Builds the program above offline into `dir`, with `args` after `go build`. cgo stays on (it
/// needs gcc, which setup installs): Debian's Go ships the standard library precompiled for that
/// configuration only, so a build without cgo would first compile all of it (half a minute).
fn go_build(dir: &Path, out: &str, args: &[&str]) -> Vec<u8> {
    let src = dir.join("src");
    if !src.exists() {
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("main.go"), GO_MAIN).unwrap();
        std::fs::write(src.join("go.mod"), "module tlsprobe\n\ngo 1.17\n").unwrap();
    }
    let out_path = dir.join(out);
    let status = Command::new("go")
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(&out_path)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOENV", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "1")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running `go build`: {e}. The Go targets test builds a Go program with Debian's \
                 golang-go: run `cargo xtask setup` (or `apt-get install golang-go`)"
            )
        });
    assert!(
        status.success(),
        "go build {args:?} failed (it needs gcc for cgo: run `cargo xtask setup`)"
    );
    std::fs::read(out_path).unwrap()
}

fn go_tool_nm(path: &Path) -> HashMap<String, u64> {
    nm_text_symbols(&run(Command::new("go").args(["tool", "nm"]).arg(path)))
}

/// Go amd64 prologues: the stack check `cmp rsp, [r14+16]`, or `lea r12, [rsp-N]` before it when
/// the frame is large.
fn looks_like_go_prologue(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x49\x3b\x66\x10")
        || bytes.starts_with(b"\x4c\x8d\x64\x24")
        || bytes.starts_with(b"\x4c\x8d\xa4\x24")
}

fn assert_go_targets(data: &[u8], targets: &TlsTargets, symbols: &HashMap<String, u64>, go: &str) {
    assert_eq!(targets.library, TlsLibrary::Go);
    assert_eq!(targets.version.as_deref(), Some(go));
    let kinds: Vec<(&str, ProbeKind)> = probe_names(targets);
    assert_eq!(
        kinds,
        [
            ("crypto/tls.(*Conn).Write", ProbeKind::GoWrite),
            ("crypto/tls.(*Conn).Read", ProbeKind::GoRead),
            (
                "crypto/tls.(*Conn).writeRecordLocked",
                ProbeKind::GoWriteRecord
            ),
            (
                "crypto/tls.(*Conn).handshakeContext",
                ProbeKind::GoHandshake
            ),
            (
                "crypto/tls.(*Conn).clientHandshake",
                ProbeKind::GoClientStart
            ),
            ("crypto/tls.(*Conn).Close", ProbeKind::GoClose),
        ]
    );
    for p in &targets.probes {
        assert_eq!(Some(&p.address), symbols.get(&p.symbol), "{}", p.symbol);
        let at = p.file_offset as usize;
        assert!(
            looks_like_go_prologue(&data[at..at + 8]),
            "{} at {at:#x}: {:02x?}",
            p.symbol,
            &data[at..at + 8]
        );
        assert!(!p.kind.is_return(), "no uretprobes on Go");
    }
}

/// One test for every Go build, so that they share a build cache.
#[test]
fn go_binaries_plain_stripped_pie_external_and_sectionless() {
    let dir = TempDir::new("tls-targets-go");
    let go = run(Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOENV", "off"));
    let go = go.trim();

    let plain = go_build(&dir, "plain", &[]);
    let symbols = go_tool_nm(&dir.join("plain"));
    let targets = find_targets(&plain).unwrap().expect("plain Go build");
    assert_go_targets(&plain, &targets, &symbols, go);
    for p in &targets.probes {
        assert_eq!(p.file_offset, section_rule_offset(&plain, p.address));
    }

    // -s -w drops the symbol table and DWARF, not the layout: same addresses as the plain build.
    let stripped = go_build(&dir, "stripped", &["-ldflags=-s -w"]);
    assert!(go_tool_nm_fails(&dir.join("stripped")));
    let stripped_targets = find_targets(&stripped).unwrap().expect("stripped Go build");
    assert_go_targets(&stripped, &stripped_targets, &symbols, go);

    // Section headers gone too (as sstrip leaves it): the tables are found by their magic.
    let mut sectionless = stripped.clone();
    sectionless[0x28..0x30].fill(0); // e_shoff
    sectionless[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
    assert_eq!(find_targets(&sectionless).unwrap(), Some(stripped_targets));

    // PIE: ET_DYN, the table in `.data.rel.ro.gopclntab`. The slow one: Debian ships no
    // position-independent standard library, so this build compiles it.
    let pie = go_build(&dir, "pie", &["-buildmode=pie"]);
    let pie_targets = find_targets(&pie).unwrap().expect("PIE Go build");
    assert_go_targets(&pie, &pie_targets, &go_tool_nm(&dir.join("pie")), go);

    // External linking puts C start-up code before runtime.text inside .text: the header's
    // textStart, not the section address, is the base of the entry offsets.
    let external = go_build(&dir, "external", &["-ldflags=-linkmode=external"]);
    let external_targets = find_targets(&external)
        .unwrap()
        .expect("externally linked Go build");
    assert_go_targets(
        &external,
        &external_targets,
        &go_tool_nm(&dir.join("external")),
        go,
    );

    // Hostile edits of a real table: absurd header fields are errors, never panics.
    let magic_at = memchr::memmem::find(&plain, &[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8])
        .or_else(|| memchr::memmem::find(&plain, &[0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8]))
        .expect("a Go 1.18+ pclntab");
    for (word, value) in [
        (0, u64::MAX),     // nfunc
        (0, 1 << 40),      // nfunc
        (3, u64::MAX),     // funcnameOffset
        (7, u64::MAX - 3), // pclnOffset
        (7, 1 << 33),      // pclnOffset
    ] {
        let mut bad = plain.clone();
        let at = magic_at + 8 + 8 * word;
        bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
        assert!(
            matches!(find_targets(&bad), Err(TargetError::Malformed(_))),
            "word {word} = {value:#x}"
        );
    }
    // A textStart that overflows every entry: no function found, so no targets.
    let mut bad = plain.clone();
    let at = magic_at + 8 + 8 * 2;
    bad[at..at + 8].copy_from_slice(&(u64::MAX - 16).to_le_bytes());
    assert!(matches!(find_targets(&bad), Ok(None)));

    // The same binary claiming an older Go: stack ABI, refused.
    let mut old = plain.clone();
    let at: Vec<usize> = memchr::memmem::find_iter(&plain, go.as_bytes()).collect();
    assert!(!at.is_empty());
    for at in at {
        old[at..at + 6].copy_from_slice(b"go1.16");
    }
    assert!(matches!(
        find_targets(&old),
        Err(TargetError::GoStackAbi { version }) if version.starts_with("go1.16")
    ));
}

fn go_tool_nm_fails(path: &Path) -> bool {
    !Command::new("go")
        .args(["tool", "nm"])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

// --- Hand-made files ------------------------------------------------------------------------

fn tiny_openssl() -> TinyElf {
    TinyElf {
        soname: Some("libssl.so.3"),
        dynsym: vec![
            TinySym::func("SSL_write", 0x10),
            TinySym::func("SSL_read", 0x20),
            TinySym::import("malloc"),
        ],
        ..TinyElf::default()
    }
}

fn go_funcs() -> Vec<(&'static str, u64)> {
    vec![
        ("runtime.main", 0x00),
        ("crypto/tls.(*Conn).Write", 0x40),
        ("crypto/tls.(*Conn).Read", 0x80),
        ("main.main", 0xc0),
    ]
}

fn tiny_go(magic: u32, version: Option<&str>) -> TinyElf {
    let mut extra = vec![(".gopclntab", pclntab(magic, TEXT_OFFSET, &go_funcs()))];
    if let Some(v) = version {
        extra.push((".go.buildinfo", buildinfo(v)));
    }
    TinyElf {
        e_type: elf::ET_EXEC,
        extra,
        ..TinyElf::default()
    }
}

#[test]
fn tiny_openssl_library() {
    let targets = find_targets(&tiny_openssl().build()).unwrap().unwrap();
    assert_eq!(targets.version.as_deref(), Some("libssl.so.3"));
    assert_eq!(
        targets.probes,
        [
            ProbeTarget {
                symbol: "SSL_write".into(),
                address: TEXT_OFFSET + 0x10,
                file_offset: TEXT_OFFSET + 0x10,
                kind: ProbeKind::Write
            },
            ProbeTarget {
                symbol: "SSL_read".into(),
                address: TEXT_OFFSET + 0x20,
                file_offset: TEXT_OFFSET + 0x20,
                kind: ProbeKind::Read
            },
            ProbeTarget {
                symbol: "SSL_read".into(),
                address: TEXT_OFFSET + 0x20,
                file_offset: TEXT_OFFSET + 0x20,
                kind: ProbeKind::ReadReturn
            },
        ]
    );
    assert!(ProbeKind::ReadReturn.is_return() && !ProbeKind::Read.is_return());
}

#[test]
fn imported_or_non_function_symbols_are_not_targets() {
    let import = TinyElf {
        dynsym: vec![TinySym::import("SSL_write"), TinySym::import("SSL_read")],
        ..TinyElf::default()
    };
    assert_eq!(find_targets(&import.build()).unwrap(), None);
    let object = TinyElf {
        dynsym: vec![TinySym {
            func: false,
            ..TinySym::func("SSL_write", 0x10)
        }],
        ..TinyElf::default()
    };
    assert_eq!(find_targets(&object.build()).unwrap(), None);
}

#[test]
fn default_symbol_version_wins() {
    // .dynsym: the hidden (non-default) SSL_write first, the default one second.
    let dynsym = TinyElf {
        dynsym: vec![
            TinySym {
                versym: 0x8002,
                ..TinySym::func("SSL_write", 0x10)
            },
            TinySym {
                versym: 3,
                ..TinySym::func("SSL_write", 0x30)
            },
        ],
        versym: true,
        ..TinyElf::default()
    };
    let t = find_targets(&dynsym.build()).unwrap().unwrap();
    assert_eq!(t.probes[0].address, TEXT_OFFSET + 0x30);
    // .symtab of a static link: `name@VER` is an old version, `name@@VER` the default.
    let symtab = TinyElf {
        symtab: vec![
            TinySym::func("SSL_write@OPENSSL_1_1_0", 0x10),
            TinySym::func("SSL_write@@OPENSSL_3.0.0", 0x30),
            TinySym::func("SSL_write_ex", 0x40),
        ],
        ..TinyElf::default()
    };
    let t = find_targets(&symtab.build()).unwrap().unwrap();
    assert_eq!(t.probes[0].symbol, "SSL_write");
    assert_eq!(t.probes[0].address, TEXT_OFFSET + 0x30);
    assert_eq!(t.probes[1].kind, ProbeKind::WriteEx);
    assert_eq!(split_version(b"SSL_read"), (&b"SSL_read"[..], true));
}

#[test]
fn function_outside_executable_segments_is_malformed() {
    let elf = TinyElf {
        executable_segment: false,
        ..tiny_openssl()
    };
    assert!(matches!(
        find_targets(&elf.build()),
        Err(TargetError::Malformed(_))
    ));
}

#[test]
fn not_ours_is_none() {
    assert_eq!(find_targets(b"").unwrap(), None);
    assert_eq!(find_targets(b"#!/bin/sh\n").unwrap(), None);
    let mut elf32 = tiny_openssl().build();
    elf32[4] = elf::ELFCLASS32;
    assert_eq!(find_targets(&elf32).unwrap(), None);
    let mut big_endian = tiny_openssl().build();
    big_endian[5] = elf::ELFDATA2MSB;
    assert_eq!(find_targets(&big_endian).unwrap(), None);
    let relocatable = TinyElf {
        e_type: elf::ET_REL,
        ..tiny_openssl()
    };
    assert_eq!(find_targets(&relocatable.build()).unwrap(), None);
    // An ELF with neither C symbols nor a Go table.
    assert_eq!(find_targets(&TinyElf::default().build()).unwrap(), None);
}

#[test]
fn go_formats_by_magic() {
    for (magic, version) in [
        (0xffff_fff1, Some("go1.21.0")),
        (0xffff_fff0, Some("go1.18.10")),
        (0xffff_fff0, None),
        (0xffff_fffa, Some("go1.17.13")),
    ] {
        let t = find_targets(&tiny_go(magic, version).build())
            .unwrap()
            .unwrap_or_else(|| panic!("{magic:#x}"));
        assert_eq!(t.library, TlsLibrary::Go);
        assert_eq!(t.version.as_deref(), version);
        assert_eq!(
            t.probes
                .iter()
                .map(|p| (p.kind, p.file_offset))
                .collect::<Vec<_>>(),
            [
                (ProbeKind::GoWrite, TEXT_OFFSET + 0x40),
                (ProbeKind::GoRead, TEXT_OFFSET + 0x80)
            ],
            "{magic:#x}"
        );
    }
}

#[test]
fn go_text_start_zero_falls_back_to_the_text_section() {
    let elf = TinyElf {
        e_type: elf::ET_DYN,
        extra: vec![(".gopclntab", pclntab(0xffff_fff1, 0, &go_funcs()))],
        ..TinyElf::default()
    };
    let t = find_targets(&elf.build()).unwrap().unwrap();
    assert_eq!(t.probes[0].file_offset, TEXT_OFFSET + 0x40);
}

#[test]
fn go_stack_abi_and_unknown_abi_are_refused() {
    assert!(matches!(
        find_targets(&tiny_go(0xffff_fffa, Some("go1.16.15")).build()),
        Err(TargetError::GoStackAbi { version }) if version == "go1.16.15"
    ));
    assert!(matches!(
        find_targets(&tiny_go(0xffff_fffa, None).build()),
        Err(TargetError::GoAbiUnknown)
    ));
    assert!(matches!(
        find_targets(&tiny_go(0xffff_fffb, None).build()),
        Err(TargetError::GoStackAbi { .. })
    ));
    // A Go 1.15 program without crypto/tls is simply not a target.
    let no_tls = TinyElf {
        extra: vec![(".gopclntab", pclntab(0xffff_fffb, 0, &[("main.main", 0)]))],
        ..TinyElf::default()
    };
    assert_eq!(find_targets(&no_tls.build()).unwrap(), None);
    let riscv = TinyElf {
        machine: elf::EM_RISCV,
        ..tiny_go(0xffff_fff1, Some("go1.22.1"))
    };
    assert!(matches!(
        find_targets(&riscv.build()),
        Err(TargetError::GoUnsupportedArch { .. })
    ));
}

#[test]
fn go_without_crypto_tls_is_none() {
    let elf = TinyElf {
        extra: vec![(
            ".gopclntab",
            pclntab(0xffff_fff1, TEXT_OFFSET, &[("main.main", 0)]),
        )],
        ..TinyElf::default()
    };
    assert_eq!(find_targets(&elf.build()).unwrap(), None);
}

#[test]
fn go_without_section_headers() {
    let elf = TinyElf {
        section_headers: false,
        ..tiny_go(0xffff_fff1, Some("go1.23.4"))
    };
    let t = find_targets(&elf.build()).unwrap().unwrap();
    assert_eq!(t.version.as_deref(), Some("go1.23.4"));
    assert_eq!(t.probes.len(), 2);
}

#[test]
fn go_version_numbers() {
    assert_eq!(go_minor_version("go1.19.8"), Some(19));
    assert_eq!(go_minor_version("go1.21rc2"), Some(21));
    assert_eq!(go_minor_version("devel go1.23-abcdef Tue"), Some(23));
    assert_eq!(go_minor_version("go2"), None);
    assert_eq!(read_uvarint(&[0x96, 0x01]), Some((150, 2)));
    assert_eq!(read_uvarint(&[0x80; 12]), None);
}

#[test]
fn tls_library_names() {
    for name in [
        "libssl.so",
        "libssl.so.3",
        "libssl.so.1.1",
        "libgnutls.so.30",
        "libboringssl.so",
    ] {
        assert!(is_tls_library_name(name), "{name}");
    }
    for name in [
        "libssl3.so",
        "libssl.sox",
        "libcrypto.so.3",
        "libgnutls-openssl.so.27",
        "libc.so.6",
        "",
    ] {
        assert!(!is_tls_library_name(name), "{name}");
    }
}

// --- Hostile input --------------------------------------------------------------------------

#[test]
fn absurd_pclntab_headers_are_errors() {
    let good = pclntab(0xffff_fff1, TEXT_OFFSET, &go_funcs());
    for (word, value) in [
        (0, u64::MAX),
        (0, 1 << 62),
        (3, u64::MAX),
        (3, 1 << 20),
        (7, u64::MAX),
        (7, u64::MAX - 7),
    ] {
        let mut bad = good.clone();
        let at = 8 + 8 * word;
        bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let elf = TinyElf {
            extra: vec![(".gopclntab", bad)],
            ..TinyElf::default()
        };
        assert!(
            matches!(find_targets(&elf.build()), Err(TargetError::Malformed(_))),
            "word {word} = {value:#x}"
        );
    }
    for header in [&good[..7], &good[..40], b"\xf1\xff\xff\xff\x00\x00\x03\x08"] {
        let elf = TinyElf {
            extra: vec![(".gopclntab", header.to_vec())],
            ..TinyElf::default()
        };
        assert!(matches!(
            find_targets(&elf.build()),
            Err(TargetError::Malformed(_))
        ));
    }
}

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn truncated_and_mutated_files_never_panic() {
    let seeds = [
        tiny_openssl().build(),
        tiny_go(0xffff_fff1, Some("go1.21.0")).build(),
        tiny_go(0xffff_fffa, Some("go1.17.1")).build(),
        TinyElf {
            section_headers: false,
            ..tiny_go(0xffff_fff0, None)
        }
        .build(),
    ];
    let mut noise = Noise(0x5eed);
    for seed in &seeds {
        for len in 0..seed.len() {
            let _ = find_targets(&seed[..len]);
        }
        for _ in 0..3000 {
            let mut bytes = seed.clone();
            for _ in 0..1 + noise.next() % 4 {
                let at = (noise.next() % bytes.len() as u64) as usize;
                bytes[at] = match noise.next() % 3 {
                    0 => noise.next() as u8,
                    1 => 0xff,
                    _ => 0,
                };
            }
            let _ = find_targets(&bytes);
        }
    }
    // A real library cut short anywhere: an error or nothing, never a panic.
    let libssl = read(LIBSSL);
    for len in (0..libssl.len()).step_by(4093) {
        let _ = find_targets(&libssl[..len]);
    }
    let mut garbage = b"\x7fELF\x02\x01\x01".to_vec();
    garbage.extend((0..4096).map(|_| noise.next() as u8));
    let _ = find_targets(&garbage);
}

#[test]
fn file_reader_refuses_what_is_not_a_regular_file() {
    assert!(matches!(
        find_targets_in_file(Path::new("/dev/null")),
        Err(TargetError::NotRegularFile { .. })
    ));
    let dir = TempDir::new("tls-targets-file");
    assert!(matches!(
        find_targets_in_file(&dir),
        Err(TargetError::NotRegularFile { .. })
    ));
    // A FIFO must not block the reader.
    let fifo = dir.join("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    assert!(matches!(
        find_targets_in_file(&fifo),
        Err(TargetError::NotRegularFile { .. })
    ));
    let err = find_targets_in_file(&dir.join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let small = dir.write("not-elf", "hello");
    assert_eq!(find_targets_in_file(&small).unwrap(), None);
}

#[test]
fn targets_serialize_with_lowercase_names() {
    let t = find_targets(&tiny_openssl().build()).unwrap().unwrap();
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["library"], "openssl");
    assert_eq!(json["probes"][2]["kind"], "read_return");
    assert_eq!(serde_json::to_value(TlsLibrary::GnuTls).unwrap(), "gnutls");
}

/// The fuzz seeds are these hand-made files; `RELAYWATCH_WRITE_SEEDS=1` rewrites them.
#[test]
fn fuzz_seeds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/fuzz_tls_targets");
    for (name, bytes) in [
        ("tiny_openssl", tiny_openssl().build()),
        ("tiny_go120", tiny_go(0xffff_fff1, Some("go1.21.0")).build()),
    ] {
        let path = dir.join(name);
        if std::env::var_os("RELAYWATCH_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is stale: rerun this test with RELAYWATCH_WRITE_SEEDS=1",
            path.display()
        );
    }
}
