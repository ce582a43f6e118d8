//! The schema validators (`tests/src/schema.rs`) are themselves tested: a valid record passes,
//! and one mutation per rule fails with the expected message, so a record that passes them in
//! `schemas.rs` passes because it conforms, not because the validator looks at nothing.

use std::path::Path;
use std::sync::OnceLock;

use integration_tests::schema::{Ecs, Ocsf};
use serde_json::{Value, json};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");

fn ecs() -> &'static Ecs {
    static ECS: OnceLock<Ecs> = OnceLock::new();
    ECS.get_or_init(|| {
        Ecs::load(&Path::new(SCHEMAS).join("ecs_flat-9.4.0.yml"))
            .expect("ECS loads")
            .with_custom_namespaces(&["relaywatch"])
    })
}

fn ocsf() -> &'static Ocsf {
    static OCSF: OnceLock<Ocsf> = OnceLock::new();
    OCSF.get_or_init(|| Ocsf::load(&Path::new(SCHEMAS).join("ocsf-1.8.0")).expect("OCSF loads"))
}

/// Sets the value at a JSON pointer, creating intermediate objects.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut current = doc;
    for part in pointer.trim_start_matches('/').split('/') {
        if let Some(i) = part.parse::<usize>().ok().filter(|_| current.is_array()) {
            current = &mut current[i];
        } else {
            if !current.is_object() {
                *current = json!({});
            }
            current = current
                .as_object_mut()
                .unwrap()
                .entry(part)
                .or_insert(Value::Null);
        }
    }
    *current = value;
}

fn remove(doc: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() {
        &mut *doc
    } else {
        doc.pointer_mut(parent).unwrap()
    };
    parent.as_object_mut().unwrap().remove(key);
}

#[track_caller]
fn assert_violations(actual: Vec<String>, expected: &[&str]) {
    assert_eq!(actual, expected, "\nactual violations: {actual:#?}");
}

/// Asserts exactly one violation, starting with `prefix` (for messages with long tails).
#[track_caller]
fn assert_one_starting(actual: Vec<String>, prefix: &str) {
    assert!(
        actual.len() == 1 && actual[0].starts_with(prefix),
        "expected one violation starting with {prefix:?}, got {actual:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// OCSF
// ---------------------------------------------------------------------------------------------

/// The smallest valid Network Activity event: the class's required attributes and one endpoint
/// (the network class requires at least one of src_endpoint / dst_endpoint).
fn minimal_ocsf() -> Value {
    json!({
        "class_uid": 4001,
        "category_uid": 4,
        "activity_id": 1,
        "type_uid": 400101,
        "severity_id": 1,
        "time": 1788250530123_i64,
        "metadata": { "version": "1.8.0", "product": { "name": "relaywatch", "vendor_name": "example" } },
        "dst_endpoint": { "ip": "203.0.113.7", "port": 443 }
    })
}

/// A fuller valid event using the host and security_control profiles, siblings, observables
/// and nested objects.
fn full_ocsf() -> Value {
    json!({
        "class_uid": 4001, "class_name": "Network Activity",
        "category_uid": 4, "category_name": "Network Activity",
        "activity_id": 1, "activity_name": "Open",
        "type_uid": 400101, "type_name": "Network Activity: Open",
        "time": 1788250530123_i64,
        "severity_id": 3, "severity": "Medium",
        "status_id": 1, "status": "Success",
        "message": "curl connected to api.openai.com",
        "metadata": {
            "version": "1.8.0",
            "uid": "0b7ee6a4-6c4b-4b52-9a57-4b0b3a4a1c11",
            "product": { "name": "relaywatch", "vendor_name": "example", "version": "0.1.0" },
            "profiles": ["host", "security_control"]
        },
        "src_endpoint": { "ip": "192.0.2.10", "port": 51514 },
        "dst_endpoint": { "ip": "2001:db8::7", "port": 443, "hostname": "api.openai.com" },
        "connection_info": { "direction_id": 2, "direction": "Outbound", "protocol_num": 6, "protocol_name": "tcp" },
        "tls": { "version": "1.3", "sni": "api.openai.com" },
        "actor": {
            "process": {
                "pid": 1234, "name": "curl", "cmd_line": "curl https://api.openai.com/v1/models",
                "file": { "name": "curl", "path": "/usr/bin/curl", "type_id": 1, "type": "Regular File" },
                "parent_process": { "pid": 1200, "parent_process": { "pid": 1 } },
                "user": { "uid": "1000", "name": "alice" }
            },
            "user": { "uid": "1000", "name": "alice" }
        },
        "device": { "hostname": "build-01", "type_id": 1, "type": "Server" },
        "is_alert": true,
        "action_id": 2, "action": "Denied",
        "disposition_id": 2, "disposition": "Blocked",
        "firewall_rule": { "name": "ai-provider", "uid": "v2fly:openai" },
        "observables": [
            { "name": "dst_endpoint.hostname", "type_id": 1, "type": "Hostname", "value": "api.openai.com" },
            { "name": "dst_endpoint.ip", "type_id": 2, "value": "2001:db8::7" },
            { "name": "actor.process.name", "type_id": 9, "value": "curl" }
        ],
        "unmapped": { "anything": [1, { "goes": null }], "here": "yes" }
    })
}

fn ocsf_with(pointer: &str, value: Value) -> Vec<String> {
    let mut event = full_ocsf();
    set(&mut event, pointer, value);
    ocsf().violations(&event)
}

fn ocsf_without(pointer: &str) -> Vec<String> {
    let mut event = full_ocsf();
    remove(&mut event, pointer);
    ocsf().violations(&event)
}

#[test]
fn ocsf_schema_compiles_every_object() {
    assert_violations(ocsf().schema_errors(), &[]);
}

#[test]
fn ocsf_valid_events_pass() {
    assert_violations(ocsf().violations(&minimal_ocsf()), &[]);
    assert_violations(ocsf().violations(&full_ocsf()), &[]);
}

#[test]
fn ocsf_event_must_be_an_object() {
    assert_violations(
        ocsf().violations(&json!([1])),
        &["(root): expected a JSON object, got [1]"],
    );
}

#[test]
fn ocsf_class_uid_must_be_4001() {
    assert_one_starting(
        ocsf_with("/class_uid", json!(3002)),
        "class_uid: class 3002 (authentication) is not supported",
    );
    assert_one_starting(
        ocsf_with("/class_uid", json!(4999)),
        "class_uid: 4999 is not an OCSF 1.8.0 class",
    );
    assert_violations(
        ocsf_with("/class_uid", json!("4001")),
        &[r#"class_uid: expected integer (integer_t), got "4001""#],
    );
    assert_violations(
        ocsf_without("/class_uid"),
        &["class_uid: required attribute missing"],
    );
}

#[test]
fn ocsf_unknown_attributes_are_reported_at_any_depth() {
    assert_violations(
        ocsf_with("/container", json!({ "name": "c" })),
        &["container: unknown attribute (not defined in class network_activity)"],
    );
    assert_violations(
        ocsf_with("/tls/ja4", json!("t13d1516h2_8daaf6152771_e5627efa2ab1")),
        &["tls.ja4: unknown attribute (not defined in object tls)"],
    );
    assert_violations(
        ocsf_with(
            "/actor/process/parent_process/parent_process/comm",
            json!("init"),
        ),
        &[
            "actor.process.parent_process.parent_process.comm: unknown attribute (not defined in object process)",
        ],
    );
}

#[test]
fn ocsf_unmapped_and_json_attributes_take_anything() {
    assert_violations(
        ocsf_with("/unmapped/deep", json!({ "x": [[1], { "y": true }] })),
        &[],
    );
    // enrichments[].data is json_t; name and value are required there.
    assert_violations(
        ocsf_with(
            "/enrichments",
            json!([{ "name": "n", "value": "v", "data": [1, "two", { "three": 3 }] }]),
        ),
        &[],
    );
    assert_violations(
        ocsf_with("/unmapped", json!("text")),
        &[r#"unmapped: expected object (object), got "text""#],
    );
}

#[test]
fn ocsf_types_are_checked() {
    assert_violations(
        ocsf_with("/dst_endpoint/port", json!("443")),
        &[r#"dst_endpoint.port: expected integer (port_t), got "443""#],
    );
    assert_violations(
        ocsf_with("/dst_endpoint/port", json!(70000)),
        &["dst_endpoint.port: value 70000 outside the port_t range 0..=65535"],
    );
    assert_violations(
        ocsf_with("/dst_endpoint/ip", json!("203.0.113.300")),
        &[r#"dst_endpoint.ip: "203.0.113.300" is not an IPv4 or IPv6 address (ip_t)"#],
    );
    assert_violations(
        ocsf_with("/time", json!("2026-09-01T08:15:30Z")),
        &[r#"time: expected integer (timestamp_t), got "2026-09-01T08:15:30Z""#],
    );
    assert_violations(
        ocsf_with("/is_alert", json!("true")),
        &[r#"is_alert: expected boolean (boolean_t), got "true""#],
    );
    assert_violations(
        ocsf_with("/message", json!(42)),
        &["message: expected string (string_t), got 42"],
    );
    assert_violations(
        ocsf_with("/severity_id", json!(1.5)),
        &["severity_id: expected integer (integer_t), got 1.5"],
    );
    assert_violations(
        ocsf_with("/actor/process/pid", json!(4_294_967_296_i64)),
        &["actor.process.pid: 4294967296 does not fit a 32-bit integer (integer_t)"],
    );
    assert_violations(
        ocsf_with("/device/os_machine_uuid", json!("not-a-uuid")),
        &[r#"device.os_machine_uuid: "not-a-uuid" is not a UUID (uuid_t)"#],
    );
    assert_violations(
        ocsf_with("/actor/user/email_addr", json!("alice")),
        &[r#"actor.user.email_addr: "alice" is not an email address (email_t)"#],
    );
    assert_violations(
        ocsf_with("/device/mac", json!("02:42:ac:11:00")),
        &[r#"device.mac: "02:42:ac:11:00" is not a MAC address (mac_t)"#],
    );
    assert_violations(
        ocsf_with("/tls", json!("1.3")),
        &[r#"tls: expected object (tls), got "1.3""#],
    );
}

#[test]
fn ocsf_is_array_is_enforced_both_ways() {
    assert_violations(
        ocsf_with(
            "/observables",
            json!({ "name": "dst_endpoint.ip", "type_id": 2 }),
        ),
        &[
            r#"observables: expected array of observable, got {"name":"dst_endpoint.ip","type_id":2}"#,
        ],
    );
    assert_violations(
        ocsf_with("/dst_endpoint/hostname", json!(["api.openai.com"])),
        &[
            r#"dst_endpoint.hostname: expected a single hostname_t, got an array ["api.openai.com"]"#,
        ],
    );
    assert_violations(
        ocsf_with("/metadata/profiles", json!(["host", "security_control", 7])),
        &["metadata.profiles[2]: expected string (string_t), got 7"],
    );
}

#[test]
fn ocsf_enum_values_are_checked() {
    assert_violations(
        ocsf_with("/activity_id", json!(42)),
        &[
            "activity_id: value 42 not in enum activity_id (allowed: 0, 1, 2, 3, 4, 5, 6, 7, 99)",
            "type_uid: expected 400142 (class_uid 4001 * 100 + activity_id 42), got 400101",
        ],
    );
    assert_violations(
        ocsf_with("/severity_id", json!(9)),
        &["severity_id: value 9 not in enum severity_id (allowed: 0, 1, 2, 3, 4, 5, 6, 99)"],
    );
    assert_one_starting(
        ocsf_with("/connection_info/direction_id", json!(7)),
        "connection_info.direction_id: value 7 not in enum direction_id",
    );
    assert_one_starting(
        ocsf_with("/device/type_id", json!(16)),
        "device.type_id: value 16 not in enum type_id",
    );
    assert_one_starting(
        ocsf_with("/disposition_id", json!(1000)),
        "disposition_id: value 1000 not in enum disposition_id",
    );
    assert_one_starting(
        ocsf_with("/category_uid", json!(3)),
        "category_uid: value 3 not in enum category_uid (allowed: 4)",
    );
    assert_one_starting(
        ocsf_with("/tls/protocol_ver_id", json!(5)),
        "tls.protocol_ver_id: unknown attribute",
    );
    assert_one_starting(
        ocsf_with("/connection_info/protocol_ver_id", json!(5)),
        "connection_info.protocol_ver_id: value 5 not in enum protocol_ver_id",
    );
}

#[test]
fn ocsf_sibling_captions_must_match() {
    assert_violations(
        ocsf_with("/activity_name", json!("Close")),
        &[r#"activity_name: expected "Open" (caption of activity_id 1), got "Close""#],
    );
    assert_violations(
        ocsf_with("/severity", json!("High")),
        &[r#"severity: expected "Medium" (caption of severity_id 3), got "High""#],
    );
    assert_violations(
        ocsf_with("/connection_info/direction", json!("outbound")),
        &[
            r#"connection_info.direction: expected "Outbound" (caption of direction_id 2), got "outbound""#,
        ],
    );
    assert_violations(
        ocsf_with("/action", json!("Allowed")),
        &[r#"action: expected "Denied" (caption of action_id 2), got "Allowed""#],
    );
    assert_violations(
        ocsf_with("/device/type", json!("Desktop")),
        &[r#"device.type: expected "Server" (caption of type_id 1), got "Desktop""#],
    );
    assert_violations(
        ocsf_with("/class_name", json!("Network")),
        &[r#"class_name: expected "Network Activity" (caption of class_uid 4001), got "Network""#],
    );
    assert_violations(
        ocsf_with("/observables/0/type", json!("Domain")),
        &[r#"observables[0].type: expected "Hostname" (caption of type_id 1), got "Domain""#],
    );
    // 99 (Other) leaves the caption to the source.
    let mut event = full_ocsf();
    set(&mut event, "/severity_id", json!(99));
    set(&mut event, "/severity", json!("Catastrophic"));
    assert_violations(ocsf().violations(&event), &[]);
}

#[test]
fn ocsf_required_attributes_are_enforced_in_class_and_objects() {
    assert_violations(
        ocsf_without("/time"),
        &["time: required attribute missing (in network_activity)"],
    );
    assert_violations(
        ocsf_with("/time", Value::Null),
        &["time: required attribute missing (in network_activity)"],
    );
    assert_violations(
        ocsf_without("/metadata/product"),
        &["metadata.product: required attribute missing (in metadata)"],
    );
    assert_violations(
        ocsf_with("/tls", json!({ "sni": "api.openai.com" })),
        &["tls.version: required attribute missing (in tls)"],
    );
    assert_violations(
        ocsf_without("/actor/process/file/type_id"),
        &["actor.process.file.type_id: required attribute missing (in file)"],
    );
    assert_violations(
        ocsf_without("/connection_info/direction_id"),
        &["connection_info.direction_id: required attribute missing (in network_connection_info)"],
    );
}

#[test]
fn ocsf_type_uid_follows_class_and_activity() {
    assert_violations(
        ocsf_with("/type_uid", json!(400102)),
        &["type_uid: expected 400101 (class_uid 4001 * 100 + activity_id 1), got 400102"],
    );
    assert_violations(
        ocsf_with("/type_name", json!("Network Activity: Close")),
        &[
            r#"type_name: expected "Network Activity: Open" (caption of type_uid 400101), got "Network Activity: Close""#,
        ],
    );
    let mut event = full_ocsf();
    set(&mut event, "/activity_id", json!(2));
    set(&mut event, "/activity_name", json!("Close"));
    set(&mut event, "/type_uid", json!(400102));
    set(&mut event, "/type_name", json!("Network Activity: Close"));
    assert_violations(ocsf().violations(&event), &[]);
}

#[test]
fn ocsf_observables_are_checked() {
    assert_one_starting(
        ocsf_with("/observables/1/type_id", json!(12345)),
        "observables[1].type_id: value 12345 not in enum type_id",
    );
    assert_violations(
        ocsf_without("/observables/1/type_id"),
        &["observables[1].type_id: required attribute missing (in observable)"],
    );
    assert_violations(
        ocsf_with("/observables/2/name", json!("actor.process.comm")),
        &[
            r#"observables[2].name: "actor.process.comm" does not name an attribute of class network_activity"#,
        ],
    );
    assert_violations(
        ocsf_with(
            "/observables/2/name",
            json!("actor.process.parent_process.file.name"),
        ),
        &[],
    );
}

#[test]
fn ocsf_deprecated_attributes_are_reported() {
    assert_violations(
        ocsf_with("/actor/process/tid", json!(1234)),
        &[
            "actor.process.tid: deprecated in 1.8.0 (since 1.6.0): tid is deprecated in favor of ptid. ptid has type long_t which can accommodate the thread identifiers returned by all platforms (e.g. 64-bit on MacOS).",
        ],
    );
    assert_one_starting(
        ocsf_with("/tls/sans", json!([])),
        "tls.sans: deprecated in 1.8.0 (since 1.4.0): Use tls.certificate.sans attribute instead.",
    );
}

#[test]
fn ocsf_constraints_are_enforced() {
    assert_violations(
        ocsf_with("/device", json!({ "type_id": 1 })),
        &[
            "device: constraint at_least_one failed (in device): none of ip, uid, name, hostname, instance_uid, interface_uid, interface_name is present",
        ],
    );
    let mut event = full_ocsf();
    remove(&mut event, "/src_endpoint");
    remove(&mut event, "/dst_endpoint");
    remove(&mut event, "/observables");
    assert_violations(
        ocsf().violations(&event),
        &[
            "(root): constraint at_least_one failed (in network_activity): none of dst_endpoint, src_endpoint is present",
        ],
    );
    // just_one: a vulnerability names exactly one of advisory / cve / cwe (reached through the
    // osint profile).
    let mut event = full_ocsf();
    set(
        &mut event,
        "/metadata/profiles",
        json!(["host", "security_control", "osint"]),
    );
    set(
        &mut event,
        "/osint",
        json!([{ "type_id": 1, "value": "api.openai.com",
        "vulnerabilities": [{ "cve": { "uid": "CVE-2024-0001" }, "cwe": { "uid": "CWE-79" } }] }]),
    );
    assert_violations(
        ocsf().violations(&event),
        &[
            "osint[0].vulnerabilities[0]: constraint just_one failed (in vulnerability): exactly one of advisory, cve, cwe expected, found 2",
        ],
    );
}

#[test]
fn ocsf_profiles_gate_attributes_in_class_and_objects() {
    // Without the host profile the class has no device or actor.
    let mut event = full_ocsf();
    set(
        &mut event,
        "/metadata/profiles",
        json!(["security_control"]),
    );
    assert_violations(
        ocsf().violations(&event),
        &[
            "actor: attribute of profile host, which metadata.profiles does not list",
            "device: attribute of profile host, which metadata.profiles does not list",
            r#"observables[2].name: "actor.process.name" does not name an attribute of class network_activity"#,
        ],
    );
    // The container profile adds `container` to process and endpoint objects, not to the class.
    let container = json!({ "name": "web", "uid": "4c1a" });
    assert_violations(
        ocsf_with("/actor/process/container", container.clone()),
        &[
            "actor.process.container: attribute of profile container, which metadata.profiles does not list",
        ],
    );
    let mut event = full_ocsf();
    set(
        &mut event,
        "/metadata/profiles",
        json!(["host", "security_control", "container"]),
    );
    set(&mut event, "/actor/process/container", container.clone());
    set(&mut event, "/dst_endpoint/container", container.clone());
    set(&mut event, "/device/container", container.clone());
    assert_violations(ocsf().violations(&event), &[]);
    set(&mut event, "/container", container);
    assert_violations(
        ocsf().violations(&event),
        &["container: unknown attribute (not defined in class network_activity)"],
    );
    // A profile adds its required attributes: cloud requires `cloud`.
    assert_violations(
        ocsf_with(
            "/metadata/profiles",
            json!(["host", "security_control", "cloud"]),
        ),
        &["cloud: required attribute missing (in network_activity)"],
    );
    assert_violations(
        ocsf_with(
            "/metadata/profiles",
            json!(["host", "security_control", "nope"]),
        ),
        &[r#"metadata.profiles[2]: unknown profile "nope""#],
    );
}

#[test]
fn ocsf_datetime_profile_adds_dt_twins() {
    assert_violations(
        ocsf_with("/time_dt", json!("2026-09-01T08:15:30.123Z")),
        &["time_dt: unknown attribute (not defined in class network_activity)"],
    );
    let mut event = full_ocsf();
    set(
        &mut event,
        "/metadata/profiles",
        json!(["host", "security_control", "datetime"]),
    );
    set(&mut event, "/time_dt", json!("2026-09-01T08:15:30.123Z"));
    set(
        &mut event,
        "/metadata/logged_time_dt",
        json!("2026-09-01T08:15:31+02:00"),
    );
    assert_violations(ocsf().violations(&event), &[]);
    set(&mut event, "/time_dt", json!("2026-09-01 08:15:30"));
    assert_violations(
        ocsf().violations(&event),
        &[r#"time_dt: "2026-09-01 08:15:30" is not an RFC 3339 date-time (datetime_t)"#],
    );
}

#[test]
fn ocsf_recursive_objects_are_validated_at_every_level() {
    let mut event = full_ocsf();
    let mut chain = json!({ "pid": "one" });
    for _ in 0..5 {
        chain = json!({ "pid": 2, "parent_process": chain });
    }
    set(&mut event, "/actor/process/parent_process", chain);
    assert_violations(
        ocsf().violations(&event),
        &[
            r#"actor.process.parent_process.parent_process.parent_process.parent_process.parent_process.parent_process.pid: expected integer (integer_t), got "one""#,
        ],
    );
    // A document deeper than the guard is reported, not walked (and does not overflow).
    let mut deep = json!({ "pid": 1 });
    for _ in 0..200 {
        deep = json!({ "pid": 1, "parent_process": deep });
    }
    set(&mut event, "/actor/process/parent_process", deep);
    let violations = ocsf().violations(&event);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].ends_with("nested deeper than 64 levels; not checked"),
        "{violations:#?}"
    );
}

#[test]
fn ocsf_metadata_version_must_match_schema() {
    assert_violations(
        ocsf_with("/metadata/version", json!("1.7.0")),
        &[
            r#"metadata.version: expected "1.8.0" (the schema version validated against), got "1.7.0""#,
        ],
    );
}

#[test]
fn ocsf_odd_input_does_not_panic() {
    for odd in [
        json!(null),
        json!("x"),
        json!({}),
        json!({ "class_uid": 4001 }),
        json!({ "class_uid": 4001, "metadata": [], "observables": "x", "activity_id": "1" }),
    ] {
        let _ = ocsf().violations(&odd);
    }
    let violations = ocsf().violations(&json!({ "class_uid": 4001 }));
    assert!(
        violations
            .contains(&"metadata: required attribute missing (in network_activity)".to_string()),
        "{violations:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// ECS
// ---------------------------------------------------------------------------------------------

fn minimal_ecs() -> Value {
    json!({
        "@timestamp": "2026-09-01T08:15:30.123Z",
        "ecs": { "version": "9.4.0" },
        "event": { "kind": "alert", "category": ["network"], "type": ["connection", "start"], "outcome": "success", "severity": 47 },
        "destination": { "ip": "203.0.113.7", "port": 443, "domain": "api.openai.com" },
        "process": { "pid": 1234, "args": ["curl", "https://api.openai.com"], "parent": { "pid": 1200 } },
        "host": { "mac": ["02-42-AC-11-00-02"], "geo": { "location": { "lat": 48.1, "lon": 11.6 } } },
        "labels": { "team": "sec" },
        "tls": { "client": { "server_name": "api.openai.com", "ja3": "771,4865-4866" } },
        "threat": { "enrichments": [{ "indicator": { "type": "domain-name", "url": { "domain": "openai.com" } },
                                      "matched": { "atomic": "api.openai.com", "field": "tls.client.server_name", "type": "indicator_match_rule" } }] },
        "relaywatch": { "anything": [1, { "goes": true }] }
    })
}

fn ecs_with(pointer: &str, value: Value) -> Vec<String> {
    let mut doc = minimal_ecs();
    set(&mut doc, pointer, value);
    ecs().violations(&doc)
}

#[test]
fn ecs_valid_document_passes() {
    assert_violations(ecs().violations(&minimal_ecs()), &[]);
    // Dotted keys are the same fields as nested ones.
    assert_violations(ecs().violations(&json!({ "@timestamp": 1788250530123_i64, "ecs.version": "9.4.0", "event.kind": "event" })), &[]);
}

#[test]
fn ecs_unknown_fields_are_reported() {
    assert_violations(
        ecs_with(
            "/tls/client/ja4",
            json!("t13d1516h2_8daaf6152771_e5627efa2ab1"),
        ),
        &["tls.client.ja4: not an ECS field"],
    );
    assert_violations(
        ecs_with("/tls/client/alpn", json!(["h2"])),
        &["tls.client.alpn: not an ECS field"],
    );
    assert_violations(
        ecs_with("/threat/enrichments/0/indicator/colour", json!("red")),
        &["threat.enrichments[0].indicator.colour: not an ECS field"],
    );
    assert_violations(
        ecs_with("/tls/client", json!("x")),
        &[r#"tls.client: expected an object holding tls.client.* fields, got "x""#],
    );
    // Without the custom namespace, relaywatch.* is not ECS.
    let plain = Ecs::load(&Path::new(SCHEMAS).join("ecs_flat-9.4.0.yml")).unwrap();
    assert_violations(
        plain.violations(&minimal_ecs()),
        &["relaywatch: not an ECS field"],
    );
}

#[test]
fn ecs_types_are_checked() {
    assert_violations(
        ecs_with("/destination/port", json!("443")),
        &[r#"destination.port: expected integer (long), got "443""#],
    );
    assert_violations(
        ecs_with("/destination/ip", json!("api.openai.com")),
        &[r#"destination.ip: expected IPv4 or IPv6 address string (ip), got "api.openai.com""#],
    );
    assert_violations(
        ecs_with("/@timestamp", json!("01/09/2026")),
        &[
            r#"@timestamp: expected ISO 8601 date string or epoch milliseconds (date), got "01/09/2026""#,
        ],
    );
    assert_violations(
        ecs_with("/destination/domain", json!(7)),
        &["destination.domain: expected string (keyword), got 7"],
    );
    assert_violations(
        ecs_with("/host/geo/location", json!(true)),
        &[
            r#"host.geo.location: expected a geo_point ({"lat":..,"lon":..}, [lon, lat] or "lat,lon"), got true"#,
        ],
    );
    assert_violations(
        ecs_with("/labels/team", json!(5)),
        &["labels.team: expected string (keyword), got 5"],
    );
    assert_violations(
        ecs_with("/threat/enrichments", json!("x")),
        &[r#"threat.enrichments: expected object (nested), got "x""#],
    );
    assert_violations(
        ecs_with("/host/mac/0", json!("02:42:ac:11:00:02")),
        &[
            r#"host.mac[0]: value "02:42:ac:11:00:02" does not match pattern ^[A-F0-9]{2}(-[A-F0-9]{2}){5,}$"#,
        ],
    );
}

#[test]
fn ecs_arrays_only_where_allowed() {
    assert_violations(
        ecs_with("/destination/ip", json!(["203.0.113.7"])),
        &[
            r#"destination.ip: array not allowed (ip field without normalize: array), got ["203.0.113.7"]"#,
        ],
    );
    assert_violations(ecs_with("/event/category", json!("network")), &[]);
    assert_violations(
        ecs_with("/process/args/1", json!(3)),
        &["process.args[1]: expected string (keyword), got 3"],
    );
}

#[test]
fn ecs_allowed_values_are_enforced() {
    assert_violations(
        ecs_with("/event/kind", json!("alarm")),
        &[
            r#"event.kind: value "alarm" is not one of the allowed values (alert, asset, enrichment, event, metric, state, pipeline_error, signal)"#,
        ],
    );
    assert_one_starting(
        ecs_with("/event/category/0", json!("net")),
        r#"event.category[0]: value "net" is not one of the allowed values"#,
    );
    assert_one_starting(
        ecs_with("/event/type/1", json!("begin")),
        r#"event.type[1]: value "begin" is not one of the allowed values"#,
    );
    assert_one_starting(
        ecs_with("/event/outcome", json!("ok")),
        r#"event.outcome: value "ok" is not one of the allowed values"#,
    );
}

#[test]
fn ecs_required_fields_must_be_present() {
    let mut doc = minimal_ecs();
    remove(&mut doc, "/ecs");
    assert_violations(
        ecs().violations(&doc),
        &["ecs.version: required field missing"],
    );
    remove(&mut doc, "/@timestamp");
    assert_violations(
        ecs().violations(&doc),
        &[
            "@timestamp: required field missing",
            "ecs.version: required field missing",
        ],
    );
    assert_violations(
        ecs().violations(&json!([])),
        &["(root): expected a JSON object, got []"],
    );
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn loading_reports_broken_sources() {
    let missing = Path::new("/nonexistent/ecs_flat.yml");
    assert!(
        Ecs::load(missing)
            .unwrap_err()
            .starts_with("cannot read /nonexistent/ecs_flat.yml")
    );
    assert!(Ocsf::load(Path::new("/nonexistent")).is_err());

    // A class whose $include cannot be resolved makes loading fail with the reason.
    let dir = std::env::temp_dir().join(format!("schemacheck-{}", std::process::id()));
    copy_dir(&Path::new(SCHEMAS).join("ocsf-1.8.0"), &dir);
    std::fs::remove_file(dir.join("profiles/load_balancer.json")).unwrap();
    let error = Ocsf::load(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        error.contains(
            "events/network/network.json: $include \"profiles/load_balancer.json\" not found"
        ),
        "{error}"
    );
}
