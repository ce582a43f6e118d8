//! Domain names as the matcher sees them, and the hash that makes suffix lookups cheap.
//!
//! Every name, in a rule or in a query, is brought to one canonical form before it is compared:
//! ASCII lower case, no trailing dot, Unicode labels in their `xn--` (Punycode) form. A rule and a
//! query therefore match whatever case, trailing dot or script either was written in.
//!
//! Domain rules are found by walking the query's label suffixes (`a.b.example.com`,
//! `b.example.com`, `example.com`, `com`) and looking each one up by hash (`NameIndex`). `suffix_hashes`
//! computes the hashes of all those suffixes in a single right-to-left pass over the bytes, so a
//! lookup costs O(length) hashing plus O(labels) table probes, and only label boundaries are ever
//! tried: `openai.com` can match `api.openai.com` but never `notopenai.com`.
use std::borrow::Cow;

/// The longest name DNS can carry (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;

/// Canonical form of a name written in a list: lower case, no trailing dot, `xn--` labels.
/// Errors say what is wrong in words a list author can act on.
pub fn canonical_rule_name(written: &str) -> Result<Cow<'_, str>, String> {
    if written.is_empty() {
        return Err("empty name".into());
    }
    let name = canonical(written)
        .ok_or_else(|| format!("'{written}' is not a valid internationalised domain name"))?;
    validate(&name).map_err(|why| format!("'{written}' is not a valid domain name: {why}"))?;
    Ok(name)
}

/// Canonical form of a name seen on the wire or typed by a user; `None` when it cannot be a
/// domain name at all (nothing then matches it). ASCII names, the common case, are only
/// lower-cased (borrowed when already lower case).
pub fn canonical_query_name(name: &str) -> Option<Cow<'_, str>> {
    let name = canonical(name.trim())?;
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    Some(name)
}

fn canonical(name: &str) -> Option<Cow<'_, str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(Cow::Owned(name.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(name))
        }
    } else {
        idna::domain_to_ascii(name).ok().map(Cow::Owned)
    }
}

/// One pass over the bytes of a canonical (ASCII) name.
fn validate(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    let mut label = 0usize;
    for c in name.chars() {
        match c {
            '.' if label == 0 => return Err("empty label".into()),
            '.' => label = 0,
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                label += 1;
                if label > 63 {
                    return Err("label longer than 63 characters".into());
                }
            }
            c => return Err(format!("character '{c}' is not allowed")),
        }
    }
    if label == 0 {
        return Err("empty label".into());
    }
    Ok(())
}

/// Hash of a whole canonical name, consistent with `suffix_hashes`.
pub fn name_hash(name: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in name.as_bytes().iter().rev() {
        h = fnv_step(h, b);
    }
    finish(h)
}

/// Calls `f(start, hash)` for every label suffix `name[start..]`, longest first, where `hash` is
/// `name_hash(&name[start..])`. One pass over the bytes, right to left.
pub fn suffix_hashes(name: &str, mut f: impl FnMut(usize, u64)) {
    let bytes = name.as_bytes();
    let mut h = FNV_OFFSET;
    // Suffixes are produced shortest first by the right-to-left pass; collect them so the
    // caller sees the longest (most specific) first. A name has at most 127 labels.
    let mut found: [(u8, u64); 128] = [(0, 0); 128];
    let mut n = 0;
    for i in (0..bytes.len()).rev() {
        h = fnv_step(h, bytes[i]);
        if (i == 0 || bytes[i - 1] == b'.') && n < found.len() {
            // i < MAX_NAME_LEN < 256 for canonical query names.
            found[n] = (u8::try_from(i).unwrap_or(u8::MAX), finish(h));
            n += 1;
        }
    }
    for &(start, hash) in found[..n].iter().rev() {
        f(usize::from(start), hash);
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Final avalanche (MurmurHash3 fmix64): the tables use the hash as is, and FNV alone leaves
/// the high bits, which the table uses for its control bytes, poorly mixed.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Name hashes -> rule indices, as a table sorted by hash.
///
/// Built once from all (hash, rule) pairs: sorted, then cut into 2^k buckets by the hash's top
/// k bits (k chosen so there are about as many buckets as entries). `offsets[b]..offsets[b+1]`
/// is bucket `b`'s range of `entries`, each entry the hash's low 32 bits and the rule. A lookup
/// reads one offset pair and scans about one entry; the caller confirms a candidate by comparing
/// the rule's name. 8 bytes per entry plus 4 per bucket, and building it is a sort and a
/// sequential pass, where inserting a million names one by one into a hash table is a million
/// cache misses.
pub struct NameIndex {
    shift: u32,
    offsets: Box<[u32]>,
    entries: Box<[(u32, u32)]>,
}

impl NameIndex {
    /// `pending`: (name_hash, rule) pairs; rules of one name keep their relative order.
    pub fn build(mut pending: Vec<(u64, u32)>) -> NameIndex {
        let bits = (usize::BITS - pending.len().max(16).leading_zeros()).min(31);
        let shift = 64 - bits;
        pending.sort_unstable();
        let mut offsets = vec![0u32; (1usize << bits) + 1];
        for &(hash, _) in &pending {
            offsets[(hash >> shift) as usize + 1] += 1;
        }
        for b in 1..offsets.len() {
            offsets[b] += offsets[b - 1];
        }
        let entries = pending
            .iter()
            .map(|&(hash, rule)| (hash as u32, rule))
            .collect();
        NameIndex {
            shift,
            offsets: offsets.into_boxed_slice(),
            entries,
        }
    }

    /// Calls `f` with every rule whose name may have this hash.
    pub fn candidates(&self, hash: u64, mut f: impl FnMut(u32)) {
        let b = (hash >> self.shift) as usize;
        let (Some(&lo), Some(&hi)) = (self.offsets.get(b), self.offsets.get(b + 1)) else {
            return;
        };
        for &(low, rule) in self
            .entries
            .get(lo as usize..hi as usize)
            .unwrap_or_default()
        {
            if low == hash as u32 {
                f(rule);
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.offsets.len() * 4 + self.entries.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_rule_name("OpenAI.COM.").unwrap(), "openai.com");
        assert_eq!(canonical_rule_name("例え.jp").unwrap(), "xn--r8jz45g.jp");
        assert_eq!(
            canonical_rule_name("Bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            canonical_query_name("API.OpenAI.com.").unwrap(),
            "api.openai.com"
        );
        assert!(matches!(
            canonical_query_name("api.openai.com").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            canonical_query_name("BÜCHER.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn rule_name_errors() {
        assert!(canonical_rule_name("").is_err());
        assert!(
            canonical_rule_name("a..b")
                .unwrap_err()
                .contains("empty label")
        );
        assert!(canonical_rule_name("a/b.com").unwrap_err().contains("'/'"));
        assert!(
            canonical_rule_name(&"a".repeat(64))
                .unwrap_err()
                .contains("63")
        );
    }

    #[test]
    fn name_index_finds_every_rule_of_a_name() {
        let names = ["a.example", "b.example", "a.example", "c.example"];
        let index = NameIndex::build(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (name_hash(n), i as u32))
                .collect(),
        );
        let find = |n: &str| {
            let mut v = Vec::new();
            index.candidates(name_hash(n), |r| v.push(r));
            v
        };
        assert_eq!(find("a.example"), [0, 2]);
        assert_eq!(find("c.example"), [3]);
        assert!(find("d.example").is_empty());
        assert!(NameIndex::build(Vec::new()).heap_bytes() > 0);
    }

    #[test]
    fn suffix_hashes_are_label_suffixes_longest_first() {
        let name = "a.bc.example.com";
        let mut got = Vec::new();
        suffix_hashes(name, |start, h| {
            assert_eq!(h, name_hash(&name[start..]));
            got.push(&name[start..]);
        });
        assert_eq!(
            got,
            ["a.bc.example.com", "bc.example.com", "example.com", "com"]
        );
    }
}
