//! Hand-made ELF files for the tests and the fuzz seeds: a few hundred bytes each, with exactly
//! the tables a case needs (symbols defined or imported, versioned names, a Go function table in
//! any of the formats read, a build-info blob), which no installed binary offers on demand.
//!
//! Layout: ELF header, one `PT_LOAD` (read + execute unless told otherwise) mapping the whole file
//! at virtual address = file offset, `.text` at [`TEXT_OFFSET`], the other sections after it,
//! section headers last. Addresses given to symbols and Go functions are offsets into `.text`.

/// File offset (= virtual address) of `.text`.
pub(super) const TEXT_OFFSET: u64 = 0x100;
pub(super) const TEXT_LEN: usize = 0x100;

pub(super) struct TinySym {
    pub name: &'static str,
    /// Offset into `.text`; unused when `defined` is false.
    pub text_offset: u64,
    pub defined: bool,
    pub func: bool,
    /// `.gnu.version` entry (dynsym only): 1 global, 2+ a version, bit 15 hidden.
    pub versym: u16,
}

impl TinySym {
    pub fn func(name: &'static str, text_offset: u64) -> Self {
        Self {
            name,
            text_offset,
            defined: true,
            func: true,
            versym: 1,
        }
    }

    pub fn import(name: &'static str) -> Self {
        Self {
            name,
            text_offset: 0,
            defined: false,
            func: true,
            versym: 1,
        }
    }
}

pub(super) struct TinyElf {
    pub e_type: u16,
    pub machine: u16,
    pub executable_segment: bool,
    pub section_headers: bool,
    pub soname: Option<&'static str>,
    pub dynsym: Vec<TinySym>,
    pub versym: bool,
    pub symtab: Vec<TinySym>,
    /// Extra sections with file contents: (name, bytes).
    pub extra: Vec<(&'static str, Vec<u8>)>,
}

impl Default for TinyElf {
    fn default() -> Self {
        Self {
            e_type: object::elf::ET_DYN,
            machine: object::elf::EM_X86_64,
            executable_segment: true,
            section_headers: true,
            soname: None,
            dynsym: Vec::new(),
            versym: false,
            symtab: Vec::new(),
            extra: Vec::new(),
        }
    }
}

struct Section {
    name: String,
    sh_type: u32,
    flags: u64,
    data: Vec<u8>,
    link: u32,
    info: u32,
    entsize: u64,
    align: u64,
}

fn symbols(syms: &[TinySym]) -> (Vec<u8>, Vec<u8>) {
    let mut strtab = vec![0u8];
    let mut table = vec![0u8; 24]; // the null symbol
    for s in syms {
        let name = strtab.len() as u32;
        strtab.extend_from_slice(s.name.as_bytes());
        strtab.push(0);
        let kind = if s.func {
            object::elf::STT_FUNC
        } else {
            object::elf::STT_OBJECT
        };
        table.extend_from_slice(&name.to_le_bytes());
        table.push((object::elf::STB_GLOBAL << 4) | kind);
        table.push(0);
        let (shndx, value) = if s.defined {
            (1u16, TEXT_OFFSET + s.text_offset)
        } else {
            (0, 0)
        };
        table.extend_from_slice(&shndx.to_le_bytes());
        table.extend_from_slice(&value.to_le_bytes());
        table.extend_from_slice(&16u64.to_le_bytes());
    }
    (table, strtab)
}

impl TinyElf {
    pub fn build(&self) -> Vec<u8> {
        use object::elf::*;
        let mut sections = vec![Section {
            name: ".text".into(),
            sh_type: SHT_PROGBITS,
            flags: u64::from(SHF_ALLOC | SHF_EXECINSTR),
            data: vec![0xc3; TEXT_LEN],
            link: 0,
            info: 0,
            entsize: 0,
            align: 16,
        }];
        if !self.dynsym.is_empty() || self.soname.is_some() {
            let (table, mut strtab) = symbols(&self.dynsym);
            let soname_at = strtab.len() as u64;
            if let Some(soname) = self.soname {
                strtab.extend_from_slice(soname.as_bytes());
                strtab.push(0);
            }
            let dynsym_index = sections.len() as u32 + 1;
            let dynstr_index = dynsym_index + 1;
            sections.push(Section {
                name: ".dynsym".into(),
                sh_type: SHT_DYNSYM,
                flags: u64::from(SHF_ALLOC),
                data: table,
                link: dynstr_index,
                info: 1,
                entsize: 24,
                align: 8,
            });
            sections.push(Section {
                name: ".dynstr".into(),
                sh_type: SHT_STRTAB,
                flags: u64::from(SHF_ALLOC),
                data: strtab,
                link: 0,
                info: 0,
                entsize: 0,
                align: 1,
            });
            if self.versym {
                let mut data = vec![0u8; 2];
                for s in &self.dynsym {
                    data.extend_from_slice(&s.versym.to_le_bytes());
                }
                sections.push(Section {
                    name: ".gnu.version".into(),
                    sh_type: SHT_GNU_VERSYM,
                    flags: u64::from(SHF_ALLOC),
                    data,
                    link: dynsym_index,
                    info: 0,
                    entsize: 2,
                    align: 2,
                });
            }
            if self.soname.is_some() {
                let mut data = Vec::new();
                for (tag, val) in [(DT_SONAME, soname_at), (DT_NULL, 0)] {
                    data.extend_from_slice(&tag.to_le_bytes());
                    data.extend_from_slice(&val.to_le_bytes());
                }
                sections.push(Section {
                    name: ".dynamic".into(),
                    sh_type: SHT_DYNAMIC,
                    flags: u64::from(SHF_ALLOC | SHF_WRITE),
                    data,
                    link: dynstr_index,
                    info: 0,
                    entsize: 16,
                    align: 8,
                });
            }
        }
        if !self.symtab.is_empty() {
            let (table, strtab) = symbols(&self.symtab);
            let symtab_index = sections.len() as u32 + 1;
            sections.push(Section {
                name: ".symtab".into(),
                sh_type: SHT_SYMTAB,
                flags: 0,
                data: table,
                link: symtab_index + 1,
                info: 1,
                entsize: 24,
                align: 8,
            });
            sections.push(Section {
                name: ".strtab".into(),
                sh_type: SHT_STRTAB,
                flags: 0,
                data: strtab,
                link: 0,
                info: 0,
                entsize: 0,
                align: 1,
            });
        }
        for (name, data) in &self.extra {
            sections.push(Section {
                name: (*name).into(),
                sh_type: SHT_PROGBITS,
                flags: u64::from(SHF_ALLOC),
                data: data.clone(),
                link: 0,
                info: 0,
                entsize: 0,
                align: 16,
            });
        }
        let mut shstrtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for s in &sections {
            name_offsets.push(shstrtab.len() as u32);
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
        }
        let shstrtab_name = shstrtab.len() as u32;
        shstrtab.extend_from_slice(b".shstrtab\0");

        // Contents, then section headers.
        let mut out = vec![0u8; TEXT_OFFSET as usize];
        let mut placed = Vec::new();
        for s in &sections {
            while !(out.len() as u64).is_multiple_of(s.align.max(1)) {
                out.push(0);
            }
            placed.push(out.len() as u64);
            out.extend_from_slice(&s.data);
        }
        let shstrtab_at = out.len() as u64;
        out.extend_from_slice(&shstrtab);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len() as u64;
        let section_header = |out: &mut Vec<u8>, name: u32, s: Option<&Section>, at: u64| {
            let (sh_type, flags, size, link, info, align, entsize) = match s {
                Some(s) => (
                    s.sh_type,
                    s.flags,
                    s.data.len() as u64,
                    s.link,
                    s.info,
                    s.align,
                    s.entsize,
                ),
                None => (SHT_STRTAB, 0, shstrtab.len() as u64, 0, 0, 1, 0),
            };
            let addr = if flags & u64::from(SHF_ALLOC) != 0 {
                at
            } else {
                0
            };
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&sh_type.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&addr.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&link.to_le_bytes());
            out.extend_from_slice(&info.to_le_bytes());
            out.extend_from_slice(&align.to_le_bytes());
            out.extend_from_slice(&entsize.to_le_bytes());
        };
        out.extend_from_slice(&[0u8; 64]); // the null section
        for (i, s) in sections.iter().enumerate() {
            section_header(&mut out, name_offsets[i], Some(s), placed[i]);
        }
        section_header(&mut out, shstrtab_name, None, shstrtab_at);
        let shnum = sections.len() as u16 + 2;
        let file_len = if self.section_headers {
            out.len() as u64
        } else {
            shoff
        };

        // ELF header.
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&ELFMAG);
        h.extend_from_slice(&[ELFCLASS64, ELFDATA2LSB, EV_CURRENT, 0]);
        h.extend_from_slice(&[0u8; 8]);
        h.extend_from_slice(&self.e_type.to_le_bytes());
        h.extend_from_slice(&self.machine.to_le_bytes());
        h.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes());
        h.extend_from_slice(&TEXT_OFFSET.to_le_bytes()); // e_entry
        h.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        let (e_shoff, shnum, shstrndx) = if self.section_headers {
            (shoff, shnum, shnum - 1)
        } else {
            (0, 0, 0)
        };
        h.extend_from_slice(&e_shoff.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        h.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
        h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        h.extend_from_slice(&shnum.to_le_bytes());
        h.extend_from_slice(&shstrndx.to_le_bytes());
        // The one PT_LOAD: the whole file at vaddr = offset.
        let flags = PF_R | if self.executable_segment { PF_X } else { 0 };
        h.extend_from_slice(&PT_LOAD.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        h.extend_from_slice(&0u64.to_le_bytes()); // p_vaddr
        h.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
        h.extend_from_slice(&file_len.to_le_bytes()); // p_filesz
        h.extend_from_slice(&file_len.to_le_bytes()); // p_memsz
        h.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
        out[..h.len()].copy_from_slice(&h);
        if !self.section_headers {
            out.truncate(shoff as usize);
        }
        out
    }
}

/// A Go function table in format `magic` (0xfffffff1, 0xfffffff0, 0xfffffffa or 0xfffffffb)
/// listing `funcs` as (name, offset into `.text`). `text_start` is what the header claims.
pub(super) fn pclntab(magic: u32, text_start: u64, funcs: &[(&str, u64)]) -> Vec<u8> {
    let mut names = Vec::new();
    let mut name_offsets = Vec::new();
    for (name, _) in funcs {
        name_offsets.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut out = magic.to_le_bytes().to_vec();
    out.extend_from_slice(&[0, 0, 1, 8]);
    if magic == 0xffff_fffb {
        // Go 1.2-1.15: only the magic matters to the reader; the names follow, NUL-separated.
        out.push(0);
        out.extend_from_slice(&names);
        return out;
    }
    let go116 = magic == 0xffff_fffa;
    let header_words = if go116 { 7 } else { 8 };
    let funcname_offset = 8 + 8 * header_words;
    let mut pcln_offset = funcname_offset + names.len() as u64;
    pcln_offset = pcln_offset.next_multiple_of(8);
    let entry_size = if go116 { 16 } else { 8 };
    let func_size = 16u64; // entry + name offset, padded
    let funcs_at = (funcs.len() as u64 + 1) * entry_size;
    let words: Vec<u64> = if go116 {
        vec![funcs.len() as u64, 0, funcname_offset, 0, 0, 0, pcln_offset]
    } else {
        vec![
            funcs.len() as u64,
            0,
            text_start,
            funcname_offset,
            0,
            0,
            0,
            pcln_offset,
        ]
    };
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&names);
    out.resize(pcln_offset as usize, 0);
    // 1.18+ entries are offsets from textStart (the .text address when the header says 0).
    let base = if go116 || text_start == 0 {
        0
    } else {
        text_start
    };
    let base = if !go116 && text_start == 0 {
        TEXT_OFFSET
    } else {
        base
    };
    let entry = |off: u64| TEXT_OFFSET + off - base;
    for (i, (_, off)) in funcs.iter().enumerate() {
        let funcoff = funcs_at + i as u64 * func_size;
        if go116 {
            out.extend_from_slice(&entry(*off).to_le_bytes());
            out.extend_from_slice(&funcoff.to_le_bytes());
        } else {
            out.extend_from_slice(&(entry(*off) as u32).to_le_bytes());
            out.extend_from_slice(&(funcoff as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(&vec![0u8; entry_size as usize]); // end-of-table entry
    for (i, (_, off)) in funcs.iter().enumerate() {
        let mut record = Vec::new();
        if go116 {
            record.extend_from_slice(&entry(*off).to_le_bytes());
        } else {
            record.extend_from_slice(&(entry(*off) as u32).to_le_bytes());
        }
        record.extend_from_slice(&name_offsets[i].to_le_bytes());
        record.resize(func_size as usize, 0);
        out.extend_from_slice(&record);
    }
    out
}

/// A Go 1.18+ `.go.buildinfo` recording `version`.
pub(super) fn buildinfo(version: &str) -> Vec<u8> {
    let mut out = b"\xff Go buildinf:".to_vec();
    out.extend_from_slice(&[8, 2]);
    out.resize(32, 0);
    out.push(version.len() as u8);
    out.extend_from_slice(version.as_bytes());
    out.push(0); // empty module info
    out
}
