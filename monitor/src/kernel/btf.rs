//! Field offsets of kernel structures, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), so the exec program can read the parent pid and the argument
//! block from `task_struct` / `mm_struct` on any kernel without compiled-in layouts.
//!
//! Only what that needs is parsed: the type section's records (to step over every kind) and the
//! members of structs and unions, descending into anonymous members (`mm_struct` keeps its fields
//! in an unnamed struct). Anything unexpected is an error naming the type and the reason; the
//! daemon then runs without kernel-side parent/arguments (it still reads /proc).
use std::collections::HashMap;

use monitor_common::TaskLayout;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset from the start of the enclosing struct/union.
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        name_off: u32,
        members: Vec<Member>,
    },
    /// typedef/const/volatile/restrict/type tag: points at another type.
    Alias(u32),
    Other,
}

pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index 0 is the void type; ids are indices.
    types: Vec<Type>,
    by_name: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

impl KernelBtf {
    pub fn read_running_kernel() -> Result<KernelBtf, String> {
        const PATH: &str = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(PATH).map_err(|e| format!("{PATH}: {e}"))?;
        KernelBtf::parse(&data).map_err(|e| format!("{PATH}: {e}"))
    }

    /// Parse a little-endian BTF blob (x86_64 and arm64 kernels).
    pub fn parse(data: &[u8]) -> Result<KernelBtf, String> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("shorter than a BTF header")?;
        if magic != BTF_MAGIC {
            return Err(format!("not little-endian BTF (magic {magic:#06x})"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len
                .checked_add(off)
                .ok_or(format!("{what} section offset overflows"))?;
            data.get(start..start.saturating_add(len))
                .ok_or(format!("{what} section runs past the end of the file"))
        };
        let types_raw = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?.to_vec();
        let mut types = vec![Type::Other];
        let mut at = 0;
        while at < types_raw.len() {
            let id = types.len();
            let name_off = u32_at(types_raw, at)?;
            let info = u32_at(types_raw, at + 4)?;
            let size_or_type = u32_at(types_raw, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                0..=19 => 0,
                other => return Err(format!("type {id}: unknown kind {other}")),
            };
            let body = types_raw
                .get(at..at + extra)
                .ok_or(format!("type {id}: truncated"))?;
            types.push(match kind {
                KIND_STRUCT | KIND_UNION => {
                    let members = (0..vlen)
                        .map(|i| {
                            let m = i * 12;
                            let offset = u32_at(body, m + 8)?;
                            Ok(Member {
                                name_off: u32_at(body, m)?,
                                type_id: u32_at(body, m + 4)?,
                                bit_offset: if kind_flag {
                                    offset & 0xff_ffff
                                } else {
                                    offset
                                },
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    Type::Composite { name_off, members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                _ => Type::Other,
            });
            at += extra;
        }
        let mut btf = KernelBtf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if let Type::Composite { name_off, .. } = t {
                let name = btf.name(*name_off);
                if !name.is_empty() {
                    // The first definition wins (later ones with the same name are rare duplicates).
                    btf.by_name.entry(name.to_owned()).or_insert(id as u32);
                }
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn composite(&self, mut id: u32) -> Option<&[Member]> {
        for _ in 0..16 {
            match self.types.get(id as usize)? {
                Type::Composite { members, .. } => return Some(members),
                Type::Alias(target) => id = *target,
                Type::Other => return None,
            }
        }
        None
    }

    fn find_in(&self, members: &[Member], field: &str, depth: u32) -> Option<u32> {
        for m in members {
            let name = self.name(m.name_off);
            if name == field {
                return Some(m.bit_offset);
            }
            if name.is_empty()
                && depth < 8
                && let Some(inner) = self
                    .composite(m.type_id)
                    .and_then(|ms| self.find_in(ms, field, depth + 1))
            {
                return m.bit_offset.checked_add(inner);
            }
        }
        None
    }

    /// Byte offset of `field` in `struct name` (anonymous members searched too).
    pub fn field_offset(&self, name: &str, field: &str) -> Result<u32, String> {
        let id = *self.by_name.get(name).ok_or(format!("no struct {name}"))?;
        let members = self
            .composite(id)
            .ok_or(format!("{name} is not a struct"))?;
        let bits = self
            .find_in(members, field, 0)
            .ok_or(format!("struct {name} has no field {field}"))?;
        if bits % 8 != 0 {
            return Err(format!("{name}.{field} is a bit field"));
        }
        Ok(bits / 8)
    }

    /// Where the exec program finds the parent and the argument block.
    pub fn task_layout(&self) -> Result<TaskLayout, String> {
        Ok(TaskLayout {
            task_real_parent: self.field_offset("task_struct", "real_parent")?,
            task_tgid: self.field_offset("task_struct", "tgid")?,
            task_mm: self.field_offset("task_struct", "mm")?,
            mm_arg_start: self.field_offset("mm_struct", "arg_start")?,
            mm_arg_end: self.field_offset("mm_struct", "arg_end")?,
            known: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `int`, `struct inner { int a; int b; }` and
    /// `struct outer { int x; struct { int y; }; struct inner in; }` (anonymous member at 4).
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0y\0in\0";
        let s = |name: &str| {
            let needle = [b"\0", name.as_bytes(), b"\0"].concat();
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            words
                .iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        // 1: int (4 bytes, signed, 32 bits)
        push(&[s("int"), KIND_INT << 24, 4, (1 << 24) | 32]);
        // 2: struct inner
        push(&[
            s("inner"),
            (KIND_STRUCT << 24) | 2,
            8,
            s("a"),
            1,
            0,
            s("b"),
            1,
            32,
        ]);
        // 3: anonymous struct { int y; }
        push(&[0, (KIND_STRUCT << 24) | 1, 4, s("y"), 1, 0]);
        // 4: const of 3 (anonymous members may be qualified)
        push(&[0, KIND_CONST << 24, 3]);
        // 5: struct outer
        push(&[
            s("outer"),
            (KIND_STRUCT << 24) | 3,
            16,
            s("x"),
            1,
            0,
            0,
            4,
            32,
            s("in"),
            2,
            64,
        ]);
        let mut blob = Vec::new();
        for w in [
            u32::from(BTF_MAGIC) | (1 << 16),
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(btf.field_offset("outer", "x"), Ok(0));
        assert_eq!(
            btf.field_offset("outer", "y"),
            Ok(4),
            "inside the anonymous struct"
        );
        assert_eq!(btf.field_offset("outer", "in"), Ok(8));
        assert_eq!(btf.field_offset("inner", "b"), Ok(4));
    }

    #[test]
    fn missing_things_are_named() {
        let btf = KernelBtf::parse(&sample()).unwrap();
        assert_eq!(
            btf.field_offset("outer", "z"),
            Err("struct outer has no field z".into())
        );
        assert_eq!(
            btf.field_offset("nothing", "x"),
            Err("no struct nothing".into())
        );
        assert!(btf.task_layout().unwrap_err().contains("task_struct"));
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let blob = sample();
        assert!(KernelBtf::parse(&[]).is_err());
        assert!(KernelBtf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
        assert!(
            KernelBtf::parse(b"\xeb\x9f\x01\x00")
                .err()
                .unwrap()
                .contains("magic")
        );
        for cut in [8, 24, 40, blob.len() - 5] {
            assert!(KernelBtf::parse(&blob[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte corruption parses or fails, never panics.
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0xff;
            let _ = KernelBtf::parse(&b).map(|btf| btf.field_offset("outer", "y"));
        }
    }

    #[test]
    fn running_kernel_has_the_fields_the_exec_program_reads() {
        // The agent needs kernel BTF anyway (socket storage maps), so it is here.
        let btf = KernelBtf::read_running_kernel().unwrap();
        let layout = btf.task_layout().expect("task_struct and mm_struct fields");
        // Layouts differ between kernels (and are shuffled under CONFIG_RANDSTRUCT): only what
        // holds everywhere. task_struct starts with thread_info/state, never with these.
        let task = [layout.task_real_parent, layout.task_tgid, layout.task_mm];
        assert!(task.iter().all(|&o| o > 0 && o < 64 * 1024), "{layout:?}");
        assert!(
            task[0] != task[1] && task[1] != task[2] && task[0] != task[2],
            "{layout:?}"
        );
        assert_ne!(layout.mm_arg_start, layout.mm_arg_end, "{layout:?}");
        assert!(
            layout.task_mm.is_multiple_of(8) && layout.task_real_parent.is_multiple_of(8),
            "pointers are aligned: {layout:?}"
        );
    }
}
