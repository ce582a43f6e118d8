//! Schema validators for the SIEM records relaywatch writes.
//!
//! * [`Ecs`] checks a nested JSON document against the Elastic Common Schema, loaded from the
//!   official generated `ecs_flat.yml` (one entry per flat field name).
//! * [`Ocsf`] checks an OCSF event against a class compiled from the ocsf-schema sources
//!   (`dictionary.json`, `categories.json`, `events/`, `objects/`, `profiles/`), following
//!   `extends` and `$include` the way the OCSF server compiles them.
//!
//! Both report violations as human-readable strings of the form `path: reason`, where `path`
//! is the dotted JSON path (`threat.enrichments[0].indicator.type`). Neither panics on odd
//! input: any JSON value yields a list of violations.
//!
//! Dependencies are deliberately limited to `serde_json` and `serde_yaml`; the few regular
//! expressions the schemas carry are therefore re-implemented by hand (see `ocsf_format` and
//! `ecs_pattern`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Documents nested deeper than this are reported instead of walked, so a runaway or hostile
/// document (or one built in code, which serde_json's parser limit does not cover) cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Label used in messages about the document root, which has no path of its own.
const ROOT: &str = "(root)";

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn label(path: &str) -> &str {
    if path.is_empty() { ROOT } else { path }
}

/// JSON rendering of a value for messages, shortened so that each violation stays one line.
fn show(v: &Value) -> String {
    const LIMIT: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        let cut: String = text.chars().take(LIMIT - 3).collect();
        format!("{cut}...")
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid JSON in {}: {e}", path.display()))
}

/// Recursive merge as the OCSF server's `Utils.deep_merge`: objects merge key by key, and
/// anything else on the right (including `null`, which is how a class cancels an inherited
/// `"profile"`) replaces the left.
fn deep_merge(left: &Value, right: &Value) -> Value {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let mut out = l.clone();
            for (k, rv) in r {
                let merged = match out.get(k) {
                    Some(lv) => deep_merge(lv, rv),
                    None => rv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => right.clone(),
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Which spellings of a date/time are acceptable.
#[derive(Clone, Copy)]
enum DateStyle {
    /// Elasticsearch's default `strict_date_optional_time`: a bare date is fine, seconds are
    /// optional, and offsets may be written `+hh:mm`, `+hhmm` or `+hh`.
    Elasticsearch,
    /// OCSF `datetime_t`, per its dictionary regex:
    /// `^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?([Zz]|[\+-]\d{2}:\d{2})?$`.
    Ocsf,
}

fn is_date_time(s: &str, style: DateStyle) -> bool {
    let b = s.as_bytes();
    let num = |at: usize, n: usize| -> Option<u32> {
        let part = b.get(at..at + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);

    let (Some(year), Some(month), Some(day)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return false;
    };
    if !sep(4, b'-') || !sep(7, b'-') {
        return false;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if b.len() == 10 {
        return matches!(style, DateStyle::Elasticsearch);
    }
    if !matches!(b[10], b'T' | b't') {
        return false;
    }
    let (Some(hour), Some(minute)) = (num(11, 2), num(14, 2)) else {
        return false;
    };
    if !sep(13, b':') || hour > 23 || minute > 59 {
        return false;
    }
    let mut at = 16;
    if sep(at, b':') {
        match num(at + 1, 2) {
            Some(second) if second <= 60 => at += 3,
            _ => return false,
        }
    } else if matches!(style, DateStyle::Ocsf) {
        return false;
    }
    if sep(at, b'.') || (matches!(style, DateStyle::Elasticsearch) && sep(at, b',')) {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return false;
        }
        at += 1 + digits;
    }
    let rest = &b[at..];
    match rest {
        [] | [b'Z'] | [b'z'] => true,
        [sign, ..] if *sign == b'+' || *sign == b'-' => {
            let offset = &rest[1..];
            let two = |p: &[u8]| p.len() == 2 && p.iter().all(u8::is_ascii_digit);
            match style {
                DateStyle::Ocsf => {
                    offset.len() == 5 && offset[2] == b':' && two(&offset[..2]) && two(&offset[3..])
                }
                DateStyle::Elasticsearch => match offset.len() {
                    2 => two(offset),
                    4 => two(&offset[..2]) && two(&offset[2..]),
                    5 => offset[2] == b':' && two(&offset[..2]) && two(&offset[3..]),
                    _ => false,
                },
            }
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// ECS
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct EcsField {
    ty: String,
    /// `normalize: [array]`: the field may hold a JSON array of values.
    array: bool,
    allowed: Option<Vec<String>>,
    required: bool,
    /// For `object` fields without sub-fields (`labels`): the type of every leaf value.
    object_type: Option<String>,
    pattern: Option<String>,
}

impl EcsField {
    fn object_like(&self) -> bool {
        matches!(self.ty.as_str(), "object" | "nested" | "flattened")
    }
}

/// Elastic Common Schema, as described by a generated `ecs_flat.yml`.
#[derive(Debug, Clone)]
pub struct Ecs {
    fields: BTreeMap<String, EcsField>,
    /// Every proper dotted prefix of a field name (`tls` and `tls.client` for
    /// `tls.client.ja3`): the JSON objects a nested document holds on the way to a field.
    prefixes: BTreeSet<String>,
    /// Top-level custom namespaces (`relaywatch`) whose content is not ECS and not checked.
    custom: Vec<String>,
}

impl Ecs {
    /// Loads `ecs_flat.yml`. Custom namespaces start empty: see [`Ecs::with_custom_namespaces`].
    pub fn load(path_to_ecs_flat_yml: &Path) -> Result<Ecs, String> {
        let path = path_to_ecs_flat_yml;
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("invalid YAML in {}: {e}", path.display()))?;
        let entries = yaml
            .as_mapping()
            .ok_or_else(|| format!("{}: expected a mapping of field names", path.display()))?;

        let mut fields = BTreeMap::new();
        for (key, entry) in entries {
            let name = key
                .as_str()
                .ok_or_else(|| format!("{}: non-string field name {key:?}", path.display()))?;
            let ty = entry
                .get("type")
                .and_then(serde_yaml::Value::as_str)
                .ok_or_else(|| format!("{}: field {name} has no type", path.display()))?;
            let strings = |list: Option<&serde_yaml::Value>| -> Vec<String> {
                list.and_then(serde_yaml::Value::as_sequence)
                    .map(|seq| {
                        seq.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let allowed = entry
                .get("allowed_values")
                .and_then(serde_yaml::Value::as_sequence)
                .map(|seq| {
                    seq.iter()
                        .filter_map(|v| v.get("name").and_then(serde_yaml::Value::as_str))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                });
            let text_of = |key: &str| {
                entry
                    .get(key)
                    .and_then(serde_yaml::Value::as_str)
                    .map(str::to_string)
            };
            fields.insert(
                name.to_string(),
                EcsField {
                    ty: ty.to_string(),
                    array: strings(entry.get("normalize")).iter().any(|n| n == "array"),
                    allowed,
                    required: entry
                        .get("required")
                        .and_then(serde_yaml::Value::as_bool)
                        .unwrap_or(false),
                    object_type: text_of("object_type"),
                    pattern: text_of("pattern"),
                },
            );
        }
        if fields.is_empty() {
            return Err(format!("{}: no fields defined", path.display()));
        }

        let mut prefixes = BTreeSet::new();
        for name in fields.keys() {
            for (i, _) in name.match_indices('.') {
                prefixes.insert(name[..i].to_string());
            }
        }
        Ok(Ecs {
            fields,
            prefixes,
            custom: Vec::new(),
        })
    }

    /// Declares top-level custom namespaces (relaywatch uses `relaywatch`): anything under them
    /// is accepted unchecked. Replaces any earlier list.
    pub fn with_custom_namespaces(mut self, namespaces: &[&str]) -> Ecs {
        self.custom = namespaces.iter().map(|ns| ns.to_string()).collect();
        self
    }

    /// Violations of `doc` against ECS, with the custom namespaces given to
    /// [`Ecs::with_custom_namespaces`].
    pub fn violations(&self, doc: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let Some(root) = doc.as_object() else {
            return vec![format!("{ROOT}: expected a JSON object, got {}", show(doc))];
        };
        for (key, value) in root {
            self.walk(value, key, key, 0, &mut out);
        }
        for (name, field) in &self.fields {
            if field.required && lookup_dotted(doc, name).is_none_or(Value::is_null) {
                out.push(format!("{name}: required field missing"));
            }
        }
        out
    }

    fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|ns| {
            name == ns || (name.starts_with(ns.as_str()) && name[ns.len()..].starts_with('.'))
        })
    }

    /// Walks `value` found at flat field name `name` (shown as `at`, which carries array
    /// indexes).
    fn walk(&self, value: &Value, name: &str, at: &str, depth: usize, out: &mut Vec<String>) {
        if depth > MAX_DEPTH {
            out.push(format!(
                "{at}: nested deeper than {MAX_DEPTH} levels; not checked"
            ));
            return;
        }
        if let Some(field) = self.fields.get(name) {
            self.check_field(field, value, name, at, depth, out);
            return;
        }
        if self.is_custom(name) {
            return;
        }
        if self.prefixes.contains(name) {
            match value {
                Value::Object(members) => {
                    for (key, child) in members {
                        self.walk(child, &join(name, key), &join(at, key), depth + 1, out);
                    }
                }
                Value::Null => {}
                other => out.push(format!(
                    "{at}: expected an object holding {name}.* fields, got {}",
                    show(other)
                )),
            }
            return;
        }
        out.push(format!("{at}: not an ECS field"));
    }

    fn check_field(
        &self,
        field: &EcsField,
        value: &Value,
        name: &str,
        at: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        if value.is_null() {
            // Elasticsearch indexes null as absent; `required` is checked separately.
            return;
        }
        if field.object_like() {
            // Object, nested and flattened fields all take an object or an array of objects.
            let elements: Vec<(String, &Value)> = match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (index(at, i), v))
                    .collect(),
                single => vec![(at.to_string(), single)],
            };
            for (element_at, element) in elements {
                match element {
                    Value::Object(members) => {
                        self.check_object_members(field, members, name, &element_at, depth, out)
                    }
                    Value::Null => {}
                    other => out.push(format!(
                        "{element_at}: expected object ({}), got {}",
                        field.ty,
                        show(other)
                    )),
                }
            }
            return;
        }
        if field.ty == "geo_point" {
            if !is_geo_point(value) {
                out.push(format!(
                    "{at}: expected a geo_point ({{\"lat\":..,\"lon\":..}}, [lon, lat] or \"lat,lon\"), got {}",
                    show(value)
                ));
            }
            return;
        }
        match value {
            Value::Array(items) if field.array => {
                for (i, item) in items.iter().enumerate() {
                    check_ecs_leaf(field, item, &index(at, i), out);
                }
            }
            Value::Array(_) => out.push(format!(
                "{at}: array not allowed ({} field without normalize: array), got {}",
                field.ty,
                show(value)
            )),
            single => check_ecs_leaf(field, single, at, out),
        }
    }

    fn check_object_members(
        &self,
        field: &EcsField,
        members: &Map<String, Value>,
        name: &str,
        at: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        if field.ty == "flattened" {
            // Flattened fields index arbitrary JSON as keywords; there is nothing to check.
            return;
        }
        if self.prefixes.contains(name) {
            // The object has ECS sub-fields (threat.enrichments.*): its members must be those.
            for (key, child) in members {
                self.walk(child, &join(name, key), &join(at, key), depth + 1, out);
            }
        } else if let Some(leaf_type) = &field.object_type {
            // Free-form object such as `labels`: any keys, but every leaf has the given type.
            let leaf = EcsField {
                ty: leaf_type.clone(),
                array: true,
                allowed: None,
                required: false,
                object_type: None,
                pattern: None,
            };
            check_free_leaves(&leaf, members, at, depth, out);
        }
    }
}

fn check_free_leaves(
    leaf: &EcsField,
    members: &Map<String, Value>,
    at: &str,
    depth: usize,
    out: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        out.push(format!(
            "{at}: nested deeper than {MAX_DEPTH} levels; not checked"
        ));
        return;
    }
    for (key, value) in members {
        let here = join(at, key);
        match value {
            Value::Object(inner) => check_free_leaves(leaf, inner, &here, depth + 1, out),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_ecs_leaf(leaf, item, &index(&here, i), out);
                }
            }
            single => check_ecs_leaf(leaf, single, &here, out),
        }
    }
}

/// Looks a flat field name up in a document whose keys may be nested (`{"ecs":{"version":..}}`)
/// or dotted (`{"ecs.version":..}`), as Elasticsearch accepts both.
fn lookup_dotted<'v>(doc: &'v Value, name: &str) -> Option<&'v Value> {
    let members = doc.as_object()?;
    if let Some(found) = members.get(name) {
        return Some(found);
    }
    name.match_indices('.').find_map(|(i, _)| {
        members
            .get(&name[..i])
            .and_then(|child| lookup_dotted(child, &name[i + 1..]))
    })
}

fn is_geo_point(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            let lat = m.get("lat").and_then(Value::as_f64);
            let lon = m.get("lon").and_then(Value::as_f64);
            let geojson = m.get("type").and_then(Value::as_str) == Some("Point")
                && m.get("coordinates").is_some_and(is_geo_point);
            matches!((lat, lon), (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
                || geojson
        }
        Value::Array(a) => (2..=3).contains(&a.len()) && a.iter().all(Value::is_number),
        // "lat,lon", a geohash or WKT "POINT (lon lat)": accepted loosely.
        Value::String(s) => !s.trim().is_empty(),
        _ => false,
    }
}

/// Checks one (non-array) value of an ECS leaf field: type, allowed values and pattern.
fn check_ecs_leaf(field: &EcsField, v: &Value, at: &str, out: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    if let Some(reason) = ecs_type_error(&field.ty, v) {
        out.push(format!("{at}: {reason}"));
        return;
    }
    let Some(text) = v.as_str() else { return };
    if let Some(allowed) = &field.allowed
        && !allowed.iter().any(|a| a == text)
    {
        out.push(format!(
            "{at}: value {} is not one of the allowed values ({})",
            show(v),
            allowed.join(", ")
        ));
    }
    if let Some(pattern) = &field.pattern
        && ecs_pattern(pattern, text) == Some(false)
    {
        out.push(format!(
            "{at}: value {} does not match pattern {pattern}",
            show(v)
        ));
    }
}

fn ecs_type_error(ty: &str, v: &Value) -> Option<String> {
    let expected = |what: &str| Some(format!("expected {what} ({ty}), got {}", show(v)));
    let integer_in = |low: i128, high: i128| {
        let n = v
            .as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from));
        match n {
            Some(n) if (low..=high).contains(&n) => None,
            Some(_) => Some(format!("value {} out of range for {ty}", show(v))),
            None => expected("integer"),
        }
    };
    match ty {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" | "version"
        | "binary" => (!v.is_string()).then(|| expected("string")).flatten(),
        "long" => integer_in(i64::MIN.into(), i64::MAX.into()),
        "integer" => integer_in(i32::MIN.into(), i32::MAX.into()),
        "short" => integer_in(i16::MIN.into(), i16::MAX.into()),
        "byte" => integer_in(i8::MIN.into(), i8::MAX.into()),
        "unsigned_long" => integer_in(0, u64::MAX.into()),
        "float" | "half_float" | "double" | "scaled_float" => {
            (!v.is_number()).then(|| expected("number")).flatten()
        }
        "boolean" => (!v.is_boolean()).then(|| expected("boolean")).flatten(),
        "date" => match v {
            Value::String(s) if is_date_time(s, DateStyle::Elasticsearch) => None,
            Value::Number(n) if n.is_i64() || n.is_u64() => None,
            _ => expected("ISO 8601 date string or epoch milliseconds"),
        },
        "ip" => match v.as_str() {
            Some(s) if s.parse::<IpAddr>().is_ok() => None,
            _ => expected("IPv4 or IPv6 address string"),
        },
        // A type this validator does not know: accept any scalar rather than guess.
        _ => None,
    }
}

/// ECS attaches a regular expression to a few keyword fields. Without a regex engine among the
/// allowed dependencies, the patterns ECS 9.4.0 uses are recognised verbatim and checked by
/// hand; `None` means the pattern is unknown and was not checked.
fn ecs_pattern(pattern: &str, s: &str) -> Option<bool> {
    let b = s.as_bytes();
    match pattern {
        // MAC address: upper-case hex pairs joined by dashes, at least six of them.
        "^[A-F0-9]{2}(-[A-F0-9]{2}){5,}$" => Some(
            b.len() >= 17
                && (b.len() + 1).is_multiple_of(3)
                && b.chunks(3).all(|c| {
                    c[..2]
                        .iter()
                        .all(|x| matches!(x, b'0'..=b'9' | b'A'..=b'F'))
                        && (c.len() == 2 || c[2] == b'-')
                }),
        ),
        "^[0-9a-f]{64}$" => {
            Some(b.len() == 64 && b.iter().all(|x| matches!(x, b'0'..=b'9' | b'a'..=b'f')))
        }
        "^(CAP_[A-Z_]+|\\d+)$" => Some(match s.strip_prefix("CAP_") {
            Some(rest) => {
                !rest.is_empty() && rest.bytes().all(|x| x.is_ascii_uppercase() || x == b'_')
            }
            None => !s.is_empty() && b.iter().all(u8::is_ascii_digit),
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// OCSF: compiled schema
// ---------------------------------------------------------------------------------------------

/// Classes this validator compiles and accepts. The compiler is generic; the list is short
/// because relaywatch only writes Network Activity.
const SUPPORTED_CLASSES: &[i64] = &[4001];

#[derive(Debug, Clone)]
struct Deprecation {
    since: String,
    message: String,
}

impl Deprecation {
    fn from(v: Option<&Value>) -> Option<Deprecation> {
        let v = v.filter(|v| !v.is_null())?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Deprecation {
            since: text("since"),
            message: strip_html(&text("message")),
        })
    }

    fn describe(&self, path: &str, what: &str, version: &str) -> String {
        let since = if self.since.is_empty() {
            String::new()
        } else {
            format!(" (since {})", self.since)
        };
        let message = if self.message.is_empty() {
            String::new()
        } else {
            format!(": {}", self.message)
        };
        format!("{path}: {what}deprecated in {version}{since}{message}")
    }
}

/// Schema descriptions carry HTML (`<code>ptid</code>`); messages are plain text.
fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone)]
struct EnumValue {
    caption: String,
    deprecated: Option<Deprecation>,
}

#[derive(Debug, Clone, Default)]
struct Attribute {
    /// A dictionary type (`port_t`) or an object name (`network_endpoint`).
    ty: String,
    is_array: bool,
    required: bool,
    enumeration: Option<BTreeMap<String, EnumValue>>,
    /// The caption attribute paired with an enum (`activity_name` for `activity_id`).
    sibling: Option<String>,
    deprecated: Option<Deprecation>,
    /// The profile that contributes this attribute; it exists only when the event lists it.
    profile: Option<String>,
}

#[derive(Debug, Clone)]
enum Constraint {
    AtLeastOne(Vec<String>),
    JustOne(Vec<String>),
    Unknown(String),
}

/// A compiled class or object: its own attributes plus everything from `extends`, `$include`
/// and the dictionary. Attributes of object type name the object and are resolved when a
/// document is validated, so self-references (`process.parent_process`) never expand here.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    caption: String,
    is_class: bool,
    attributes: BTreeMap<String, Attribute>,
    constraints: Vec<Constraint>,
    deprecated: Option<Deprecation>,
}

impl Item {
    fn kind(&self) -> &'static str {
        if self.is_class { "class" } else { "object" }
    }
}

#[derive(Debug, Clone)]
struct Class {
    item: Item,
    uid: i64,
}

/// A dictionary data type (`port_t`), with the constraints inherited from its base type.
#[derive(Debug, Clone)]
struct DataType {
    /// The primitive it derives from: string_t, integer_t, long_t, float_t, boolean_t, json_t.
    base: String,
    max_len: Option<usize>,
    range: Option<(f64, f64)>,
    values: Option<Vec<Value>>,
}

/// The Open Cybersecurity Schema Framework, compiled from the ocsf-schema sources.
#[derive(Debug, Clone)]
pub struct Ocsf {
    version: String,
    types: BTreeMap<String, DataType>,
    /// Every object, compiled; an object whose sources are broken keeps its error, reported
    /// only if a document uses it.
    objects: HashMap<String, Result<Item, String>>,
    classes: BTreeMap<i64, Class>,
    /// uid -> name of every class in the sources, to tell "unsupported" from "unknown".
    known_classes: BTreeMap<i64, String>,
    profiles: BTreeSet<String>,
}

impl Ocsf {
    /// Loads and compiles the schema in `dir` (the root of an ocsf-schema checkout).
    pub fn load(dir: &Path) -> Result<Ocsf, String> {
        let version = read_json(&dir.join("version.json"))?
            .get("version")
            .and_then(Value::as_str)
            .ok_or("version.json has no version")?
            .to_string();
        let dictionary = read_json(&dir.join("dictionary.json"))?;
        let dict_attrs = dictionary
            .get("attributes")
            .and_then(Value::as_object)
            .ok_or("dictionary.json has no attributes")?;
        let dict_types = dictionary
            .pointer("/types/attributes")
            .and_then(Value::as_object)
            .ok_or("dictionary.json has no types")?;
        let types = compile_types(dict_types)?;
        let categories = read_json(&dir.join("categories.json"))?;

        let profiles = schema_files(&dir.join("profiles"), false)?
            .iter()
            .map(|(path, _)| read_json(path).map(|p| item_name(&p, path)))
            .collect::<Result<BTreeSet<_>, _>>()?;

        // Objects: read, resolve `$include`, then `extends`, then merge with the dictionary.
        let mut object_sources = BTreeMap::new();
        for (path, origin) in schema_files(&dir.join("objects"), false)? {
            let raw = read_json(&path)?;
            let name = item_name(&raw, &path);
            object_sources.insert(name, resolve_includes(dir, raw, &origin, 0));
        }
        let observable_ids = observable_type_ids(dict_types, dict_attrs, &object_sources);
        let mut resolver = Resolver::new(&object_sources);
        let mut objects = HashMap::new();
        for name in object_sources.keys() {
            let compiled = resolver
                .resolve(name, &mut Vec::new())
                .and_then(|raw| compile_item(dict_attrs, name, &raw, false));
            objects.insert(name.clone(), compiled);
        }
        // The observable type_id enum is not in the sources: the OCSF server derives it from
        // every `observable` number in the dictionary types, dictionary attributes and objects.
        if let Some(Ok(observable)) = objects.get_mut("observable")
            && let Some(type_id) = observable.attributes.get_mut("type_id")
        {
            let mut values = type_id.enumeration.take().unwrap_or_default();
            for (id, caption) in &observable_ids {
                values.entry(id.to_string()).or_insert_with(|| EnumValue {
                    caption: caption.clone(),
                    deprecated: None,
                });
            }
            type_id.enumeration = Some(values);
        }

        // Classes: index every class by uid, compile the supported ones.
        let mut class_sources = BTreeMap::new();
        for (path, origin) in schema_files(&dir.join("events"), true)? {
            let raw = read_json(&path)?;
            let name = item_name(&raw, &path);
            class_sources.insert(name, resolve_includes(dir, raw, &origin, 0));
        }
        let mut resolver = Resolver::new(&class_sources);
        let mut known_classes = BTreeMap::new();
        let mut classes = BTreeMap::new();
        // Classes that do not resolve are skipped; their errors explain a missing supported class.
        let mut unresolved = Vec::new();
        for name in class_sources.keys() {
            let raw = match resolver.resolve(name, &mut Vec::new()) {
                Ok(raw) => raw,
                Err(e) => {
                    unresolved.push(format!("class {name}: {e}"));
                    continue;
                }
            };
            let Some(uid) = class_uid(&raw, &categories) else {
                continue;
            };
            known_classes.insert(uid, name.clone());
            if SUPPORTED_CLASSES.contains(&uid) {
                let item = compile_item(dict_attrs, name, &raw, true)?;
                classes.insert(uid, finish_class(item, uid, &raw, &categories)?);
            }
        }
        for uid in SUPPORTED_CLASSES {
            if !classes.contains_key(uid) {
                let why = if unresolved.is_empty() {
                    String::new()
                } else {
                    format!("; unresolved: {}", unresolved.join("; "))
                };
                return Err(format!("class {uid} not found in {}{why}", dir.display()));
            }
        }

        Ok(Ocsf {
            version,
            types,
            objects,
            classes,
            known_classes,
            profiles,
        })
    }

    /// Violations of `event` against its class (`class_uid`) with the profiles it lists in
    /// `metadata.profiles`.
    pub fn violations(&self, event: &Value) -> Vec<String> {
        let Some(members) = event.as_object() else {
            return vec![format!(
                "{ROOT}: expected a JSON object, got {}",
                show(event)
            )];
        };
        let class = match self.class_of(members) {
            Ok(class) => class,
            // Without a class nothing else can be checked.
            Err(violation) => return vec![violation],
        };
        let mut run = Run {
            schema: self,
            profiles: BTreeSet::new(),
            out: Vec::new(),
        };
        run.profiles = self.event_profiles(members, &mut run.out);
        if let Some(deprecated) = &class.item.deprecated {
            run.out.push(deprecated.describe(
                ROOT,
                &format!("class {} ", class.item.name),
                &self.version,
            ));
        }
        run.item(&class.item, members, "", 0);
        run.type_uid(class, members);
        run.observable_names(&class.item, members);
        run.metadata_version(members);
        run.out
    }

    /// Objects whose sources could not be compiled (a broken `$include` or `extends`). They
    /// only matter if an event uses them, which is then reported; empty for a sound schema.
    pub fn schema_errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .objects
            .iter()
            .filter_map(|(name, item)| item.as_ref().err().map(|e| format!("object {name}: {e}")))
            .collect();
        errors.sort();
        errors
    }

    fn class_of(&self, event: &Map<String, Value>) -> Result<&Class, String> {
        let value = match event.get("class_uid") {
            None | Some(Value::Null) => return Err("class_uid: required attribute missing".into()),
            Some(v) => v,
        };
        let Some(uid) = value.as_i64() else {
            return Err(format!(
                "class_uid: expected integer (integer_t), got {}",
                show(value)
            ));
        };
        if let Some(class) = self.classes.get(&uid) {
            return Ok(class);
        }
        let supported: Vec<String> = self
            .classes
            .values()
            .map(|c| format!("{} ({})", c.uid, c.item.caption))
            .collect();
        Err(match self.known_classes.get(&uid) {
            Some(name) => format!(
                "class_uid: class {uid} ({name}) is not supported by this validator; expected {}",
                supported.join(" or ")
            ),
            None => format!(
                "class_uid: {uid} is not an OCSF {} class; expected {}",
                self.version,
                supported.join(" or ")
            ),
        })
    }

    /// The known profiles `metadata.profiles` lists; unknown names are reported. A wrongly
    /// typed list is left to the attribute checks.
    fn event_profiles(
        &self,
        event: &Map<String, Value>,
        out: &mut Vec<String>,
    ) -> BTreeSet<String> {
        let mut listed = BTreeSet::new();
        let Some(list) = event
            .get("metadata")
            .and_then(|m| m.get("profiles"))
            .and_then(Value::as_array)
        else {
            return listed;
        };
        for (i, profile) in list.iter().enumerate() {
            let Some(name) = profile.as_str() else {
                continue;
            };
            if self.profiles.contains(name) {
                listed.insert(name.to_string());
            } else {
                let note = if name.contains('/') {
                    " (extension profiles are not loaded)"
                } else {
                    ""
                };
                out.push(format!(
                    "metadata.profiles[{i}]: unknown profile \"{name}\"{note}"
                ));
            }
        }
        listed
    }

    /// Why `v` is not a valid value of dictionary type `name`, if it is not.
    fn data_type_error(&self, name: &str, v: &Value) -> Option<String> {
        let Some(ty) = self.types.get(name) else {
            return Some(format!("schema error: unknown data type {name}"));
        };
        let expected = |what: &str| Some(format!("expected {what} ({name}), got {}", show(v)));
        match ty.base.as_str() {
            "string_t" => {
                let Some(s) = v.as_str() else {
                    return expected("string");
                };
                if let Some(max) = ty.max_len {
                    let len = s.chars().count();
                    if len > max {
                        return Some(format!(
                            "{len} characters exceed the {max} allowed by {name}"
                        ));
                    }
                }
                if let Some(what) = ocsf_format(name, s) {
                    return Some(format!("{} is not {what} ({name})", show(v)));
                }
            }
            "integer_t" => match v.as_i64() {
                Some(n) if i32::try_from(n).is_ok() => {}
                Some(_) => {
                    return Some(format!(
                        "{} does not fit a 32-bit integer ({name})",
                        show(v)
                    ));
                }
                None => return expected("integer"),
            },
            "long_t" => {
                if v.as_i64().is_none() {
                    return expected("integer");
                }
            }
            // JSON does not tell 3 from 3.0, so any number is a float.
            "float_t" => {
                if !v.is_number() {
                    return expected("number");
                }
            }
            "boolean_t" => {
                if !v.is_boolean() {
                    return expected("boolean");
                }
            }
            "json_t" => return None,
            other => {
                return Some(format!(
                    "schema error: {name} derives from unknown type {other}"
                ));
            }
        }
        if let (Some((low, high)), Some(n)) = (ty.range, v.as_f64())
            && (n < low || n > high)
        {
            return Some(format!(
                "value {} outside the {name} range {low}..={high}",
                show(v)
            ));
        }
        if let Some(values) = &ty.values
            && !values.contains(v)
        {
            return Some(format!("value {} is not one of the {name} values", show(v)));
        }
        None
    }
}

/// Formats of the string subtypes the dictionary constrains with a regex. Returns what the
/// value should have been when it does not conform.
fn ocsf_format(type_name: &str, s: &str) -> Option<&'static str> {
    let ok = match type_name {
        "ip_t" => {
            // The dictionary regex admits an IPv6 zone suffix (`fe80::1%eth0`).
            let address = match s.split_once('%') {
                Some((addr, zone)) if addr.contains(':') && !zone.is_empty() => addr,
                _ => s,
            };
            address.parse::<IpAddr>().is_ok()
        }
        "mac_t" => {
            let b = s.as_bytes();
            b.len() == 17
                && b.chunks(3).all(|c| {
                    c[..2].iter().all(u8::is_ascii_hexdigit)
                        && (c.len() == 2 || matches!(c[2], b':' | b'-'))
                })
        }
        "email_t" => is_ocsf_email(s),
        // The dictionary regex is unanchored: it asks for a UUID somewhere in the string.
        "uuid_t" => s.as_bytes().windows(36).any(is_uuid),
        "datetime_t" => is_date_time(s, DateStyle::Ocsf),
        "bytestring_t" => is_base64(s),
        _ => true,
    };
    if ok {
        return None;
    }
    Some(match type_name {
        "ip_t" => "an IPv4 or IPv6 address",
        "mac_t" => "a MAC address",
        "email_t" => "an email address",
        "uuid_t" => "a UUID",
        "datetime_t" => "an RFC 3339 date-time",
        _ => "Base64",
    })
}

fn is_uuid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// `^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$` (the `+-/` in the
/// local part is a range: `+ , - . /`).
fn is_ocsf_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+,-./=?^_`{|}~".contains(&c));
    let Some((first, rest)) = domain.split_once('.') else {
        return false;
    };
    let label_ok = !first.is_empty()
        && first
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-');
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    local_ok && label_ok && rest_ok
}

/// Standard or URL-safe Base64 with padding. The dictionary regex for `bytestring_t` demands a
/// padded final group even when none is needed (it rejects "QUJD"); this follows RFC 4648.
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    if b.len() - body.len() > 2 {
        return false;
    }
    let standard = body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    let url_safe = body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    standard || url_safe
}

// ---------------------------------------------------------------------------------------------
// OCSF: compiling the sources
// ---------------------------------------------------------------------------------------------

/// `*.json` files under `dir` (recursively for events, whose files sit in category folders),
/// sorted so that compilation is deterministic, with their path relative to the schema root.
fn schema_files(dir: &Path, recursive: bool) -> Result<Vec<(PathBuf, String)>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .map_err(|e| format!("cannot list {}: {e}", current.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot list {}: {e}", current.display()))?
                .path();
            if path.is_dir() {
                if recursive {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    let root = dir.parent().unwrap_or(dir);
    Ok(found
        .into_iter()
        .map(|p| {
            let origin = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            (p, origin)
        })
        .collect())
}

fn item_name(raw: &Value, path: &Path) -> String {
    raw.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
}

/// Resolves `$include` in an item's attributes, as the OCSF server's JSON reader does:
/// each included file's attributes are merged *under* the item's own (so the item wins, and
/// of several includes the earlier wins), and attributes that come from a profile file
/// (`"meta": "profile"`) are tagged with that profile's name. Paths are relative to the
/// schema root (`profiles/host.json`). Attribute-level `$include` (enum files in older
/// schemas) is merged under the attribute.
fn resolve_includes(
    root: &Path,
    mut item: Value,
    origin: &str,
    depth: usize,
) -> Result<Value, String> {
    if depth > 8 {
        return Err(format!("{origin}: $include nested more than 8 deep"));
    }
    let Some(attrs) = item.get_mut("attributes").and_then(Value::as_object_mut) else {
        return Ok(item);
    };
    let files: Vec<String> = match attrs.remove("$include") {
        None => Vec::new(),
        Some(Value::String(file)) => vec![file],
        Some(Value::Array(list)) => list
            .iter()
            .map(|f| {
                f.as_str()
                    .map(str::to_string)
                    .ok_or(format!("{origin}: $include entry {f} is not a path"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "{origin}: $include {other} is not a path or a list of paths"
            ));
        }
    };
    let mut merged = Value::Object(attrs.clone());
    for file in &files {
        let path = root.join(file);
        if !path.is_file() {
            return Err(format!(
                "{origin}: $include \"{file}\" not found under {}",
                root.display()
            ));
        }
        let included = resolve_includes(root, read_json(&path)?, file, depth + 1)?;
        let mut included_attrs = included
            .get("attributes")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if included.get("meta").and_then(Value::as_str) == Some("profile") {
            let profile = Value::String(item_name(&included, &path));
            if let Value::Object(list) = &mut included_attrs {
                for attr in list.values_mut().filter_map(Value::as_object_mut) {
                    attr.insert("profile".into(), profile.clone());
                }
            }
        }
        merged = deep_merge(&included_attrs, &merged);
    }
    if let Value::Object(list) = &mut merged {
        for (name, attr) in list.iter_mut() {
            let Some(file) = attr.as_object_mut().and_then(|a| a.remove("$include")) else {
                continue;
            };
            let file = file
                .as_str()
                .ok_or(format!(
                    "{origin}: attribute {name}: $include {file} is not a path"
                ))?
                .to_string();
            let path = root.join(&file);
            if !path.is_file() {
                return Err(format!(
                    "{origin}: attribute {name}: $include \"{file}\" not found"
                ));
            }
            *attr = deep_merge(&read_json(&path)?, attr);
        }
    }
    item["attributes"] = merged;
    Ok(item)
}

/// Resolves `extends` chains over include-resolved sources, caching each result.
struct Resolver<'a> {
    sources: &'a BTreeMap<String, Result<Value, String>>,
    done: HashMap<String, Result<Value, String>>,
}

impl<'a> Resolver<'a> {
    fn new(sources: &'a BTreeMap<String, Result<Value, String>>) -> Resolver<'a> {
        Resolver {
            sources,
            done: HashMap::new(),
        }
    }

    /// The item with its parent's attributes deep-merged under its own. Other top-level keys
    /// come from the child when it has them (so `"constraints": {}` in `file` drops the
    /// `_entity` constraint), except `@deprecated`, which describes one item and is not
    /// inherited.
    fn resolve(&mut self, name: &str, stack: &mut Vec<String>) -> Result<Value, String> {
        if let Some(done) = self.done.get(name) {
            return done.clone();
        }
        if stack.iter().any(|s| s == name) {
            return Err(format!("extends cycle: {} -> {name}", stack.join(" -> ")));
        }
        let raw = match self.sources.get(name) {
            Some(Ok(raw)) => raw.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(format!("{name} is not defined")),
        };
        let result = match raw.get("extends").and_then(Value::as_str) {
            None => Ok(raw),
            Some(parent_name) => {
                stack.push(name.to_string());
                let parent = self.resolve(parent_name, stack);
                stack.pop();
                parent
                    .map_err(|e| format!("{name} extends {parent_name}: {e}"))
                    .map(|parent| inherit(&parent, &raw))
            }
        };
        self.done.insert(name.to_string(), result.clone());
        result
    }
}

fn inherit(parent: &Value, child: &Value) -> Value {
    let mut out = parent.as_object().cloned().unwrap_or_default();
    out.remove("@deprecated");
    let empty = Value::Object(Map::new());
    let parent_attrs = parent.get("attributes").unwrap_or(&empty);
    if let Some(child) = child.as_object() {
        for (key, value) in child {
            let merged = if key == "attributes" {
                deep_merge(parent_attrs, value)
            } else {
                value.clone()
            };
            out.insert(key.clone(), merged);
        }
    }
    Value::Object(out)
}

fn compile_types(dict_types: &Map<String, Value>) -> Result<BTreeMap<String, DataType>, String> {
    let mut types = BTreeMap::new();
    for (name, def) in dict_types {
        // Follow the `type` chain (port_t -> integer_t) to the primitive, taking the first
        // constraint found on the way: a subtype's own limits win over its base's.
        let mut current = def;
        let mut base = name.clone();
        let mut max_len = None;
        let mut range = None;
        let mut values = None;
        for _ in 0..8 {
            max_len = max_len.or_else(|| {
                current
                    .get("max_len")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize)
            });
            range = range.or_else(|| {
                let r = current.get("range")?.as_array()?;
                Some((r.first()?.as_f64()?, r.get(1)?.as_f64()?))
            });
            values = values.or_else(|| current.get("values").and_then(Value::as_array).cloned());
            let Some(parent) = current.get("type").and_then(Value::as_str) else {
                break;
            };
            base = parent.to_string();
            current = dict_types.get(parent).ok_or_else(|| {
                format!("dictionary type {name} derives from unknown type {parent}")
            })?;
        }
        types.insert(
            name.clone(),
            DataType {
                base,
                max_len,
                range,
                values,
            },
        );
    }
    Ok(types)
}

/// Compiles a resolved class or object: each attribute is the dictionary entry with the item's
/// definition deep-merged over it (so enums merge: the dictionary's 0/99 plus the item's own).
fn compile_item(
    dict_attrs: &Map<String, Value>,
    name: &str,
    raw: &Value,
    is_class: bool,
) -> Result<Item, String> {
    let empty = Map::new();
    let own = raw
        .get("attributes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut attributes = BTreeMap::new();
    for (attr_name, def) in own {
        if !def.is_object() {
            return Err(format!("{name}: attribute {attr_name} is not an object"));
        }
        let base = dict_attrs
            .get(attr_name)
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let merged = deep_merge(&base, def);
        let ty = merged.get("type").and_then(Value::as_str).ok_or_else(|| {
            format!("{name}: attribute {attr_name} has no type (not in dictionary.json)")
        })?;
        let enumeration = merged.get("enum").and_then(Value::as_object).map(|values| {
            values
                .iter()
                .map(|(key, v)| {
                    let caption = v
                        .get("caption")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    (
                        key.clone(),
                        EnumValue {
                            caption,
                            deprecated: Deprecation::from(v.get("@deprecated")),
                        },
                    )
                })
                .collect()
        });
        let text = |key: &str| merged.get(key).and_then(Value::as_str).map(str::to_string);
        attributes.insert(
            attr_name.clone(),
            Attribute {
                ty: ty.to_string(),
                is_array: merged
                    .get("is_array")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                required: text("requirement").as_deref() == Some("required"),
                enumeration,
                sibling: text("sibling"),
                deprecated: Deprecation::from(merged.get("@deprecated")),
                profile: text("profile"),
            },
        );
    }
    let mut constraints = Vec::new();
    if let Some(list) = raw.get("constraints").and_then(Value::as_object) {
        for (kind, keys) in list {
            let keys: Vec<String> = keys
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            constraints.push(match kind.as_str() {
                "at_least_one" => Constraint::AtLeastOne(keys),
                "just_one" => Constraint::JustOne(keys),
                other => Constraint::Unknown(other.to_string()),
            });
        }
    }
    Ok(Item {
        name: name.to_string(),
        caption: raw
            .get("caption")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_string(),
        is_class,
        attributes,
        constraints,
        deprecated: Deprecation::from(raw.get("@deprecated")),
    })
}

/// `category_uid * 1000 + uid`, for classes that have a uid (leaf classes); the category may
/// be inherited (network_activity takes "network" from network).
fn class_uid(raw: &Value, categories: &Value) -> Option<i64> {
    let uid = raw.get("uid")?.as_i64()?;
    let category = raw.get("category")?.as_str()?;
    let category_uid = categories
        .pointer(&format!("/attributes/{category}/uid"))?
        .as_i64()?;
    Some(category_uid * 1000 + uid)
}

/// Gives `class_uid` and `category_uid` the one-value enums the OCSF server generates for a
/// class (the base event's own enums only describe the base event), so that their siblings
/// `class_name` and `category_name` are checked like any enum caption.
fn finish_class(
    mut item: Item,
    uid: i64,
    raw: &Value,
    categories: &Value,
) -> Result<Class, String> {
    let category = raw
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let category_def = categories
        .pointer(&format!("/attributes/{category}"))
        .ok_or_else(|| format!("class {}: unknown category {category}", item.name))?;
    let category_uid = category_def
        .get("uid")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let category_caption = category_def
        .get("caption")
        .and_then(Value::as_str)
        .unwrap_or(category);
    let single = |key: i64, caption: &str| {
        Some(BTreeMap::from([(
            key.to_string(),
            EnumValue {
                caption: caption.to_string(),
                deprecated: None,
            },
        )]))
    };
    let class_caption = item.caption.clone();
    if let Some(attr) = item.attributes.get_mut("class_uid") {
        attr.enumeration = single(uid, &class_caption);
    }
    if let Some(attr) = item.attributes.get_mut("category_uid") {
        attr.enumeration = single(category_uid, category_caption);
    }
    Ok(Class { item, uid })
}

/// The observable `type_id` values and captions the OCSF server derives from the sources:
/// dictionary types (`ip_t` -> 2 "IP Address"), dictionary attributes (`pid` -> 15), objects
/// (`endpoint` -> 20) and object-specific attributes (`device.uid` -> 47).
fn observable_type_ids(
    dict_types: &Map<String, Value>,
    dict_attrs: &Map<String, Value>,
    objects: &BTreeMap<String, Result<Value, String>>,
) -> BTreeMap<i64, String> {
    let mut ids = BTreeMap::new();
    let caption = |v: &Value, fallback: &str| {
        v.get("caption")
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_string()
    };
    for (name, def) in dict_types.iter().chain(dict_attrs) {
        if let Some(id) = def.get("observable").and_then(Value::as_i64) {
            ids.entry(id).or_insert_with(|| caption(def, name));
        }
    }
    for (name, object) in objects {
        let Ok(object) = object else { continue };
        let object_caption = caption(object, name);
        if let Some(id) = object.get("observable").and_then(Value::as_i64) {
            ids.entry(id).or_insert_with(|| object_caption.clone());
        }
        if let Some(attrs) = object.get("attributes").and_then(Value::as_object) {
            for (attr, def) in attrs {
                if let Some(id) = def.get("observable").and_then(Value::as_i64) {
                    ids.entry(id)
                        .or_insert_with(|| format!("{object_caption} Object: {attr}"));
                }
            }
        }
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// OCSF: validating an event
// ---------------------------------------------------------------------------------------------

/// One validation: the schema, the profiles the event enables, and the violations so far.
struct Run<'a> {
    schema: &'a Ocsf,
    profiles: BTreeSet<String>,
    out: Vec<String>,
}

impl<'a> Run<'a> {
    /// The attributes `item` has for this event: those of no profile or of a listed profile,
    /// plus, with the `datetime` profile, a `<name>_dt` (datetime_t) twin of every timestamp.
    fn visible(&self, item: &Item) -> BTreeMap<String, Attribute> {
        let mut out: BTreeMap<String, Attribute> = item
            .attributes
            .iter()
            .filter(|(_, a)| a.profile.as_ref().is_none_or(|p| self.profiles.contains(p)))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        if self.profiles.contains("datetime") {
            let twins: Vec<(String, Attribute)> = out
                .iter()
                .filter(|(_, a)| a.ty == "timestamp_t")
                .map(|(n, a)| {
                    let twin = Attribute {
                        ty: "datetime_t".into(),
                        is_array: a.is_array,
                        profile: Some("datetime".into()),
                        ..Attribute::default()
                    };
                    (format!("{n}_dt"), twin)
                })
                .collect();
            for (name, twin) in twins {
                out.entry(name).or_insert(twin);
            }
        }
        out
    }

    fn object(&self, name: &str) -> Option<&'a Result<Item, String>> {
        self.schema.objects.get(name)
    }

    /// Checks the members of a JSON object against a compiled class or object.
    fn item(&mut self, item: &Item, members: &Map<String, Value>, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.out.push(format!(
                "{}: nested deeper than {MAX_DEPTH} levels; not checked",
                label(path)
            ));
            return;
        }
        // An item without attributes (the generic `object` type of `unmapped` and
        // `xattributes`) is open-ended: any members are allowed.
        if item.attributes.is_empty() {
            return;
        }
        let visible = self.visible(item);
        for key in members.keys() {
            if visible.contains_key(key) {
                continue;
            }
            let at = join(path, key);
            let message = match item.attributes.get(key).and_then(|a| a.profile.as_deref()) {
                Some(profile) => format!(
                    "{at}: attribute of profile {profile}, which metadata.profiles does not list"
                ),
                None => format!(
                    "{at}: unknown attribute (not defined in {} {})",
                    item.kind(),
                    item.name
                ),
            };
            self.out.push(message);
        }
        for (name, attr) in &visible {
            let at = join(path, name);
            match members.get(name) {
                None | Some(Value::Null) => {
                    if attr.required {
                        self.out.push(format!(
                            "{at}: required attribute missing (in {})",
                            item.name
                        ));
                    }
                }
                Some(value) => {
                    self.attribute(attr, value, &at, depth);
                    self.enumeration(attr, name, value, members, path);
                }
            }
        }
        self.constraints(item, members, path);
    }

    fn attribute(&mut self, attr: &Attribute, value: &Value, at: &str, depth: usize) {
        if let Some(deprecated) = &attr.deprecated {
            self.out
                .push(deprecated.describe(at, "", &self.schema.version));
        }
        match (attr.is_array, value) {
            (true, Value::Array(items)) => {
                for (i, element) in items.iter().enumerate() {
                    self.value(attr, element, &index(at, i), depth);
                }
            }
            (true, other) => self.out.push(format!(
                "{at}: expected array of {}, got {}",
                attr.ty,
                show(other)
            )),
            // json_t takes any JSON, arrays included.
            (false, Value::Array(_)) if attr.ty != "json_t" => self.out.push(format!(
                "{at}: expected a single {}, got an array {}",
                attr.ty,
                show(value)
            )),
            (false, single) => self.value(attr, single, at, depth),
        }
    }

    /// Checks one value (an attribute's, or one element of an array attribute's).
    fn value(&mut self, attr: &Attribute, value: &Value, at: &str, depth: usize) {
        if self.schema.types.contains_key(&attr.ty) {
            if let Some(reason) = self.schema.data_type_error(&attr.ty, value) {
                self.out.push(format!("{at}: {reason}"));
            }
            return;
        }
        match self.object(&attr.ty) {
            Some(Ok(object)) => match value.as_object() {
                Some(members) => {
                    if let Some(deprecated) = &object.deprecated {
                        let what = format!("object {} ", object.name);
                        self.out
                            .push(deprecated.describe(at, &what, &self.schema.version));
                    }
                    self.item(object, members, at, depth + 1);
                }
                None => self.out.push(format!(
                    "{at}: expected object ({}), got {}",
                    attr.ty,
                    show(value)
                )),
            },
            Some(Err(e)) => self.out.push(format!(
                "{at}: schema error: object {} does not compile: {e}",
                attr.ty
            )),
            None => self
                .out
                .push(format!("{at}: schema error: unknown type {}", attr.ty)),
        }
    }

    /// Enum membership, deprecated enum values, and the sibling caption (`activity_name` must
    /// be the caption of `activity_id`, except for 99 "Other", whose caption is free).
    fn enumeration(
        &mut self,
        attr: &Attribute,
        name: &str,
        value: &Value,
        parent: &Map<String, Value>,
        path: &str,
    ) {
        let Some(values) = &attr.enumeration else {
            return;
        };
        let at = join(path, name);
        let elements: Vec<(Option<usize>, &Value)> = match (attr.is_array, value) {
            (true, Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Some(i), v))
                .collect(),
            (false, v) if !v.is_array() => vec![(None, v)],
            _ => return, // wrong shape, already reported
        };
        let string_enum = self
            .schema
            .types
            .get(&attr.ty)
            .is_some_and(|t| t.base == "string_t");
        for (i, element) in elements {
            let element_at = i.map_or_else(|| at.clone(), |i| index(&at, i));
            // Enum keys are strings ("1"); values of the wrong type were reported already.
            let key = match element {
                Value::Number(n) if !string_enum && (n.is_i64() || n.is_u64()) => n.to_string(),
                Value::String(s) if string_enum => s.clone(),
                _ => continue,
            };
            let Some(entry) = values.get(&key) else {
                let mut allowed: Vec<&String> = values.keys().collect();
                allowed.sort_by_key(|k| (k.parse::<i64>().unwrap_or(i64::MAX), k.to_string()));
                let shown: Vec<&str> = allowed.iter().take(30).map(|k| k.as_str()).collect();
                let more = if allowed.len() > 30 { ", ..." } else { "" };
                self.out.push(format!(
                    "{element_at}: value {} not in enum {name} (allowed: {}{more})",
                    show(element),
                    shown.join(", ")
                ));
                continue;
            };
            if let Some(deprecated) = &entry.deprecated {
                let what = format!("enum value {key} ");
                self.out
                    .push(deprecated.describe(&element_at, &what, &self.schema.version));
            }
            let Some(sibling) = &attr.sibling else {
                continue;
            };
            if key == "99" {
                continue;
            }
            let sibling_value = match (parent.get(sibling), i) {
                (None | Some(Value::Null), _) => continue,
                (Some(Value::Array(list)), Some(i)) => list.get(i),
                (Some(v), None) => Some(v),
                (Some(_), Some(_)) => continue, // sibling of wrong shape, reported by its own check
            };
            let sibling_at =
                i.map_or_else(|| join(path, sibling), |i| index(&join(path, sibling), i));
            match sibling_value {
                Some(Value::String(s)) if *s == entry.caption => {}
                Some(other) => self.out.push(format!(
                    "{sibling_at}: expected \"{}\" (caption of {name} {key}), got {}",
                    entry.caption,
                    show(other)
                )),
                None => self.out.push(format!(
                    "{sibling_at}: missing; expected \"{}\" (caption of {name} {key})",
                    entry.caption
                )),
            }
        }
    }

    fn constraints(&mut self, item: &Item, members: &Map<String, Value>, path: &str) {
        let present = |key: &String| members.get(key).is_some_and(|v| !v.is_null());
        for constraint in &item.constraints {
            match constraint {
                Constraint::AtLeastOne(keys) if !keys.iter().any(present) => {
                    self.out.push(format!(
                        "{}: constraint at_least_one failed (in {}): none of {} is present",
                        label(path),
                        item.name,
                        keys.join(", ")
                    ))
                }
                Constraint::JustOne(keys) => {
                    let count = keys.iter().filter(|k| present(k)).count();
                    if count != 1 {
                        self.out.push(format!(
                            "{}: constraint just_one failed (in {}): exactly one of {} expected, found {count}",
                            label(path),
                            item.name,
                            keys.join(", ")
                        ));
                    }
                }
                Constraint::Unknown(kind) => self.out.push(format!(
                    "{}: schema error: unknown constraint {kind} (in {})",
                    label(path),
                    item.name
                )),
                Constraint::AtLeastOne(_) => {}
            }
        }
    }

    /// `type_uid` is `class_uid * 100 + activity_id`, and its sibling `type_name` is
    /// "<class caption>: <activity caption>".
    fn type_uid(&mut self, class: &Class, event: &Map<String, Value>) {
        let int = |key: &str| event.get(key).and_then(Value::as_i64);
        let (Some(class_uid), Some(activity)) = (int("class_uid"), int("activity_id")) else {
            return;
        };
        let expected = class_uid * 100 + activity;
        if let Some(type_uid) = int("type_uid")
            && type_uid != expected
        {
            self.out.push(format!(
                    "type_uid: expected {expected} (class_uid {class_uid} * 100 + activity_id {activity}), got {type_uid}"
                ));
        }
        let activity_caption = class
            .item
            .attributes
            .get("activity_id")
            .and_then(|a| a.enumeration.as_ref())
            .and_then(|e| e.get(&activity.to_string()))
            .map(|e| e.caption.as_str());
        if let (Some(caption), Some(type_name), true) =
            (activity_caption, event.get("type_name"), activity != 99)
        {
            let want = format!("{}: {caption}", class.item.caption);
            if type_name.as_str() != Some(want.as_str()) && !type_name.is_null() {
                self.out.push(format!(
                    "type_name: expected \"{want}\" (caption of type_uid {expected}), got {}",
                    show(type_name)
                ));
            }
        }
    }

    /// Each `observables[].name` must point at an attribute of the event's class.
    fn observable_names(&mut self, class: &Item, event: &Map<String, Value>) {
        let Some(Value::Array(list)) = event.get("observables") else {
            return;
        };
        for (i, observable) in list.iter().enumerate() {
            let Some(name) = observable.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !self.names_attribute(class, name) {
                self.out.push(format!(
                    "observables[{i}].name: \"{name}\" does not name an attribute of {} {}",
                    class.kind(),
                    class.name
                ));
            }
        }
    }

    /// Follows a dotted attribute path through the compiled class and objects. Array steps may
    /// be written `resources.uid`, `resources[].uid` or `resources[0].uid`.
    fn names_attribute(&self, class: &Item, name: &str) -> bool {
        let steps: Vec<&str> = name.split('.').collect();
        let mut current = class;
        for (n, step) in steps.iter().enumerate() {
            let step = match step.split_once('[') {
                Some((attr, rest)) => {
                    let inner = rest.strip_suffix(']').unwrap_or("x");
                    if !inner.bytes().all(|c| c.is_ascii_digit()) {
                        return false;
                    }
                    attr
                }
                None => step,
            };
            let visible = self.visible(current);
            let Some(attr) = visible.get(step) else {
                return false;
            };
            if n + 1 == steps.len() {
                return true;
            }
            match self.object(&attr.ty) {
                Some(Ok(next)) => current = next,
                _ => return false,
            }
        }
        false
    }

    /// The event says which schema version it follows; this validator checks one version.
    fn metadata_version(&mut self, event: &Map<String, Value>) {
        let Some(version) = event.get("metadata").and_then(|m| m.get("version")) else {
            return;
        };
        if let Some(text) = version.as_str()
            && text != self.schema.version
        {
            self.out.push(format!(
                "metadata.version: expected \"{}\" (the schema version validated against), got {}",
                self.schema.version,
                show(version)
            ));
        }
    }
}
