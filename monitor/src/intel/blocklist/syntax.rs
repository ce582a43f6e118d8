//! Blocklist syntax: one line of a list file in, its meaning out. Pure, no I/O.
//!
//! The v2fly domain-list-community format is accepted unchanged, so upstream files drop in:
//! `domain:NAME` or a bare `NAME` (the name and every name under it), `full:NAME` (exactly that
//! name), `keyword:TEXT` (any name containing it), `regexp:RE` (RE2 syntax, matched against the
//! canonical name), `include:LIST @attr @-attr` (merge another list, keeping only rules that carry
//! every `@attr` and none of the `@-attr`), `@attr` tags and `&affiliation`s after a rule (an
//! affiliation is v2fly build-time bookkeeping and has no meaning here), and `#` comments anywhere.
//!
//! Plain lists are accepted too: `*.NAME` (same as `domain:NAME`), hosts-file lines
//! (`0.0.0.0 NAME...`: each NAME exactly, as a resolver would), and IPv4/IPv6 addresses and CIDRs.
//!
//! A comment line `# relaywatch: key=value ...` is the list's header (category, severity, ...);
//! its keys are interpreted by the loader.
use std::{borrow::Cow, net::IpAddr};

use super::name::canonical_rule_name;
use super::prefix_trie::address_bits;

/// What a rule matches, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern<'a> {
    /// The name and every name below it (canonical name).
    Domain(Cow<'a, str>),
    /// Exactly the name (canonical name).
    Full(Cow<'a, str>),
    /// Any canonical name containing this lower-case ASCII text.
    Keyword(Cow<'a, str>),
    /// A regular expression over the canonical name (already checked to compile).
    Regexp(&'a str),
    /// An address prefix: `bits` left-aligned, `len` significant bits, `width` 32 or 128.
    Cidr { bits: u128, len: u8, width: u8 },
}

/// One rule as written on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine<'a> {
    pub pattern: Pattern<'a>,
    /// The rule's text as written (`domain:OpenAI.com`, `10.0.0.0/8`, a hosts-file name).
    pub written: &'a str,
    /// `@attr` tags, without the `@`.
    pub attrs: Vec<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeLine<'a> {
    pub list: &'a str,
    /// Rules must carry all of these attributes (`@attr`)...
    pub required: Vec<&'a str>,
    /// ...and none of these (`@-attr`).
    pub excluded: Vec<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank or comment only.
    Nothing,
    /// `# relaywatch: key=value ...`
    Header(Vec<(&'a str, &'a str)>),
    Include(IncludeLine<'a>),
    Rule(RuleLine<'a>),
    /// A hosts-file line: one rule per name.
    Hosts(Vec<RuleLine<'a>>),
}

const HEADER_TAG: &str = "relaywatch:";

/// Parses one line. The error is the reason only; the caller adds `FILE:LINE: `.
pub fn parse_line(line: &str) -> Result<Line<'_>, String> {
    let (content, comment) = match line.split_once('#') {
        Some((before, after)) => (before, Some(after)),
        None => (line, None),
    };
    let mut tokens = content.split_whitespace();
    let Some(first) = tokens.next() else {
        return match comment.map(str::trim_start) {
            Some(c) if c.starts_with(HEADER_TAG) => parse_header(&c[HEADER_TAG.len()..]),
            _ => Ok(Line::Nothing),
        };
    };
    let rest: Vec<&str> = tokens.collect();

    if let Some(list) = first.strip_prefix("include:") {
        return parse_include(list, &rest);
    }
    if let Some(ip) = parse_ip(first)
        && !rest.is_empty()
        && !rest[0].starts_with(['@', '&'])
    {
        return parse_hosts_line(ip, &rest);
    }
    let pattern = parse_pattern(first)?;
    let attrs = parse_attrs(&rest)?;
    Ok(Line::Rule(RuleLine {
        pattern,
        written: first,
        attrs,
    }))
}

fn parse_header(fields: &str) -> Result<Line<'_>, String> {
    let mut out = Vec::new();
    for field in fields.split_whitespace() {
        match field.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => out.push((k, v)),
            _ => return Err(format!("header field '{field}' is not key=value")),
        }
    }
    if out.is_empty() {
        return Err(
            "empty relaywatch: header (expected e.g. '# relaywatch: category=ai-relay')".into(),
        );
    }
    Ok(Line::Header(out))
}

fn parse_include<'a>(list: &'a str, rest: &[&'a str]) -> Result<Line<'a>, String> {
    if list.is_empty() {
        return Err("empty include:".into());
    }
    let mut required = Vec::new();
    let mut excluded = Vec::new();
    for &token in rest {
        match token.strip_prefix("@-").or_else(|| token.strip_prefix('@')) {
            Some("") | None => {
                return Err(format!(
                    "unexpected '{token}' after include:{list} (expected @attr or @-attr)"
                ));
            }
            Some(attr) if token.starts_with("@-") => excluded.push(attr),
            Some(attr) => required.push(attr),
        }
    }
    Ok(Line::Include(IncludeLine {
        list,
        required,
        excluded,
    }))
}

fn parse_attrs<'a>(rest: &[&'a str]) -> Result<Vec<&'a str>, String> {
    let mut attrs = Vec::new();
    for &token in rest {
        if let Some(attr) = token.strip_prefix('@') {
            if attr.is_empty() {
                return Err("empty attribute '@'".into());
            }
            attrs.push(attr);
        } else if let Some(target) = token.strip_prefix('&') {
            if target.is_empty() {
                return Err("empty affiliation '&'".into());
            }
        } else {
            return Err(format!(
                "unexpected '{token}' after the rule: a name cannot contain spaces, and attributes start with '@'"
            ));
        }
    }
    Ok(attrs)
}

fn parse_hosts_line<'a>(ip: IpAddr, names: &[&'a str]) -> Result<Line<'a>, String> {
    let mut rules = Vec::with_capacity(names.len());
    for &name in names {
        if name.starts_with(['@', '&']) {
            return Err(format!(
                "unexpected '{name}' in a hosts-file line ({ip} NAME...)"
            ));
        }
        let canonical = canonical_rule_name(name)?;
        rules.push(RuleLine {
            pattern: Pattern::Full(canonical),
            written: name,
            attrs: Vec::new(),
        });
    }
    Ok(Line::Hosts(rules))
}

fn parse_pattern(token: &str) -> Result<Pattern<'_>, String> {
    if let Some(cidr) = parse_address_rule(token)? {
        return Ok(cidr);
    }
    let Some((prefix, value)) = token.split_once(':') else {
        if let Some(name) = token.strip_prefix("*.") {
            return Ok(Pattern::Domain(canonical_rule_name(name)?));
        }
        return Ok(Pattern::Domain(canonical_rule_name(token)?));
    };
    if value.is_empty() && matches!(prefix, "domain" | "full" | "keyword" | "regexp") {
        return Err(format!("empty {prefix}: rule"));
    }
    match prefix {
        "domain" => Ok(Pattern::Domain(canonical_rule_name(value)?)),
        "full" => Ok(Pattern::Full(canonical_rule_name(value)?)),
        "keyword" => {
            let keyword = if value.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(value.to_ascii_lowercase())
            } else {
                Cow::Borrowed(value)
            };
            if let Some(c) = keyword
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                return Err(format!(
                    "keyword '{value}' has character '{c}', which never occurs in a domain name (write Unicode in its xn-- form)"
                ));
            }
            Ok(Pattern::Keyword(keyword))
        }
        "regexp" => match regex::Regex::new(value) {
            Ok(_) => Ok(Pattern::Regexp(value)),
            Err(e) => Err(format!(
                "bad regexp '{value}': {}",
                one_line(&e.to_string())
            )),
        },
        _ => Err(format!(
            "unknown rule prefix '{prefix}:' (expected domain:, full:, keyword:, regexp: or include:)"
        )),
    }
}

/// `Some` for an IP address or CIDR, `None` for anything that is not trying to be one.
fn parse_address_rule(token: &str) -> Result<Option<Pattern<'static>>, String> {
    let (addr, len) = match token.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (token, None),
    };
    let Some(ip) = parse_ip(addr) else {
        if len.is_some()
            && !addr.is_empty()
            && addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
        {
            return Err(format!(
                "'{token}' is not a valid CIDR (address '{addr}' does not parse)"
            ));
        }
        return Ok(None);
    };
    let (bits, width) = address_bits(ip);
    let len = match len {
        None => width,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= width => n,
            _ => {
                return Err(format!(
                    "bad CIDR prefix length '/{len}' in '{token}' ({} allows /0 to /{width})",
                    family(ip)
                ));
            }
        },
    };
    let host_mask = if len == 0 {
        u128::MAX
    } else {
        (1u128 << (128 - u32::from(len))).wrapping_sub(1)
    };
    if bits & host_mask != 0 {
        let network = address_from_bits(bits & !host_mask, width);
        return Err(format!(
            "CIDR '{token}' has host bits set (the network is {network}/{len})"
        ));
    }
    Ok(Some(Pattern::Cidr { bits, len, width }))
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

pub fn address_from_bits(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::from(((bits >> 96) as u32).to_be_bytes())
    } else {
        IpAddr::from(bits.to_be_bytes())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: &str) -> RuleLine<'_> {
        match parse_line(line) {
            Ok(Line::Rule(r)) => r,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn v2fly_rule_forms() {
        assert_eq!(
            rule("openai.com").pattern,
            Pattern::Domain("openai.com".into())
        );
        assert_eq!(
            rule("domain:OpenAI.com.").pattern,
            Pattern::Domain("openai.com".into())
        );
        assert_eq!(
            rule("full:ai.google.dev").pattern,
            Pattern::Full("ai.google.dev".into())
        );
        assert_eq!(rule("keyword:GPT").pattern, Pattern::Keyword("gpt".into()));
        assert_eq!(
            rule(r"regexp:^a\d+\.example$").pattern,
            Pattern::Regexp(r"^a\d+\.example$")
        );
        let r = rule("full:browser-intake-datadoghq.com @ads &other # tracking");
        assert_eq!(r.attrs, ["ads"]);
        assert_eq!(r.written, "full:browser-intake-datadoghq.com");
        assert_eq!(rule("  coze.com @!cn").attrs, ["!cn"]);
    }

    #[test]
    fn plain_forms() {
        assert_eq!(
            rule("*.example.org").pattern,
            Pattern::Domain("example.org".into())
        );
        assert_eq!(
            parse_line("0.0.0.0 a.example b.example # x").unwrap(),
            Line::Hosts(vec![
                RuleLine {
                    pattern: Pattern::Full("a.example".into()),
                    written: "a.example",
                    attrs: vec![]
                },
                RuleLine {
                    pattern: Pattern::Full("b.example".into()),
                    written: "b.example",
                    attrs: vec![]
                },
            ])
        );
        assert_eq!(
            rule("192.0.2.7").pattern,
            Pattern::Cidr {
                bits: 0xc000_0207 << 96,
                len: 32,
                width: 32
            }
        );
        assert_eq!(
            rule("10.0.0.0/8").pattern,
            Pattern::Cidr {
                bits: 0x0a00_0000 << 96,
                len: 8,
                width: 32
            }
        );
        assert!(matches!(
            rule("2001:db8::/32").pattern,
            Pattern::Cidr {
                len: 32,
                width: 128,
                ..
            }
        ));
        assert!(matches!(
            rule("::/0").pattern,
            Pattern::Cidr {
                len: 0,
                width: 128,
                ..
            }
        ));
    }

    #[test]
    fn comments_header_include() {
        assert_eq!(parse_line("   # just a comment").unwrap(), Line::Nothing);
        assert_eq!(parse_line("").unwrap(), Line::Nothing);
        assert_eq!(
            parse_line("# relaywatch: category=ai-relay severity=high").unwrap(),
            Line::Header(vec![("category", "ai-relay"), ("severity", "high")])
        );
        assert_eq!(
            parse_line("include:openai @cn @-ads # why").unwrap(),
            Line::Include(IncludeLine {
                list: "openai",
                required: vec!["cn"],
                excluded: vec!["ads"]
            })
        );
    }

    #[test]
    fn errors() {
        let err = |l: &str| parse_line(l).unwrap_err();
        assert_eq!(err("domain:"), "empty domain: rule");
        assert_eq!(err("full:"), "empty full: rule");
        assert!(err("domian:openai.com").starts_with("unknown rule prefix 'domian:'"));
        assert!(err("domain:open ai.com").starts_with("unexpected 'ai.com' after the rule"));
        assert!(err("regexp:^(a").starts_with("bad regexp '^(a':"));
        assert!(err("10.0.0.0/33").starts_with("bad CIDR prefix length '/33'"));
        assert!(err("2001:db8::/129").contains("IPv6 allows /0 to /128"));
        assert!(err("10.0.0.1/8").contains("host bits set (the network is 10.0.0.0/8)"));
        assert!(err("10.0.0/8").contains("not a valid CIDR"));
        assert!(err("keyword:ü").contains("xn--"));
        assert!(err("include:").contains("empty include:"));
        assert!(err("include:x y").contains("unexpected 'y'"));
        assert!(err("# relaywatch: category").contains("not key=value"));
        assert!(err("a..b").contains("empty label"));
    }
}
