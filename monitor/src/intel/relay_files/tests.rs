//! A fake host in a temporary directory: `root/etc/passwd` with root, alice (1001), bob (1002)
//! and a system account; ownership is simulated through `test_owners` (tests cannot chown).
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;
use crate::testutil::TempDir;

struct Host {
    _dir: TempDir,
    root: PathBuf,
    owners: Vec<(PathBuf, u32)>,
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
alice:x:1001:1001:Alice:/home/alice:/bin/bash\n\
bob:x:1002:1002::/home/bob:/bin/sh\n\
svc:x:998:998::/nonexistent:/usr/sbin/nologin\n\
daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
carol:x:1003:1003::/home/carol:/bin/sh\n";

impl Host {
    fn new(tag: &str) -> Host {
        let dir = TempDir::new(tag);
        let root = dir.path().canonicalize().unwrap();
        let host = Host {
            owners: vec![
                (root.clone(), 0),
                (root.join("home/alice"), 1001),
                (root.join("home/bob"), 1002),
                // carol's home is not carol's: she is skipped.
                (root.join("home/carol"), 1001),
            ],
            root,
            _dir: dir,
        };
        host.write("etc/passwd", PASSWD);
        for d in ["root", "home/alice", "home/bob", "home/carol", "usr/sbin"] {
            std::fs::create_dir_all(host.root.join(d)).unwrap();
        }
        host
    }

    /// Files below `rel` count as owned by `uid`.
    fn own(&mut self, rel: &str, uid: u32) {
        self.owners.push((self.root.join(rel), uid));
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files(&self) -> RelayFiles {
        let mut f = RelayFiles::with_default_variables(self.root.clone());
        f.test_owners = self.owners.clone();
        f
    }

    fn scan(&self) -> (RelayFiles, ScanReport) {
        let mut f = self.files();
        let report = f.scan();
        (f, report)
    }
}

/// (uid, host, key, client) of each finding from files whose path ends with `file`.
fn found_in(report: &ScanReport, file: &str) -> Vec<(u32, String, String, &'static str)> {
    report
        .findings
        .iter()
        .filter(|f| f.file.ends_with(file))
        .map(|f| (f.uid, f.host.clone(), f.key.clone(), f.client))
        .collect()
}

fn problems_about<'a>(report: &'a ScanReport, file: &str) -> Vec<&'a String> {
    report
        .problems
        .iter()
        .filter(|p| p.contains(file))
        .collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn claude_code_user_local_project_and_managed_settings() {
    let mut host = Host::new("rf-claude");
    host.write(
        "home/alice/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://Relay-A.example/api", "ANTHROPIC_AUTH_TOKEN": "sk-x",
            "DISABLE_TELEMETRY": "1"}, "permissions": {"allow": []}}"#,
    );
    host.write(
        "home/alice/.claude/settings.local.json",
        r#"{"env": {"ANTHROPIC_BEDROCK_BASE_URL": "https://bedrock.relay.example",
                    "OPENAI_BASE_URL": "relay-o.example/v1", "ANTHROPIC_VERTEX_BASE_URL": ""}}"#,
    );
    host.own("work/proj", 1001);
    host.write(
        "home/alice/.claude.json",
        r#"{"numStartups": 3, "oauthAccount": {"emailAddress": "a@example"},
            "projects": {"/work/proj": {"history": [{"display": "hi"}], "allowedTools": []},
                         "/home/alice": {}, "/work/gone": {}, "../../etc": {}}}"#,
    );
    host.write(
        "work/proj/.claude/settings.local.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:15721"}}"#,
    );
    host.write(
        "etc/claude-code/managed-settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://gateway.corp.example"}}"#,
    );
    let (files, report) = host.scan();
    assert_eq!(
        found_in(&report, ".claude/settings.json"),
        [(
            1001,
            s("relay-a.example"),
            s("env.ANTHROPIC_BASE_URL"),
            "claude-code"
        )]
    );
    let mut local = found_in(&report, "home/alice/.claude/settings.local.json");
    local.sort();
    assert_eq!(
        local,
        [
            (
                1001,
                s("bedrock.relay.example"),
                s("env.ANTHROPIC_BEDROCK_BASE_URL"),
                "claude-code"
            ),
            (
                1001,
                s("relay-o.example"),
                s("env.OPENAI_BASE_URL"),
                "claude-code"
            ),
        ]
    );
    let project = files
        .findings()
        .iter()
        .find(|f| f.file == host.path("work/proj/.claude/settings.local.json"))
        .expect("the project's settings are read");
    assert_eq!((project.uid, project.host.as_str()), (1001, "127.0.0.1"));
    assert!(project.local, "a local proxy is returned, flagged");
    assert_eq!(
        found_in(&report, "managed-settings.json"),
        [(
            ANY_UID,
            s("gateway.corp.example"),
            s("env.ANTHROPIC_BASE_URL"),
            "claude-code"
        )]
    );
    // System-wide findings apply to everyone; a user's only to that user.
    let bob: Vec<&str> = files.hosts_for_uid(1002).map(|f| f.host.as_str()).collect();
    assert_eq!(bob, ["gateway.corp.example"]);
    assert_eq!(files.hosts_for_uid(1001).count(), 5);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn codex_providers_top_level_profiles_and_profile_files() {
    let host = Host::new("rf-codex");
    host.write(
        "home/alice/.codex/config.toml",
        r#"model = "gpt-5"
model_provider = "myrelay"
openai_base_url = "https://oa.relay.example/v1"

[model_providers.myrelay]
name = "My relay"
base_url = "https://api.myrelay.example/v1"
env_key = "MYRELAY_KEY"
wire_api = "responses"
http_headers = { "Authorization" = "Bearer sk-header" }

[model_providers.ollama]
base_url = "http://localhost:11434/v1"

[profiles.fast]
model = "o3"
chatgpt_base_url = "https://chat.relay.example/backend-api"
"#,
    );
    host.write(
        "home/alice/.codex/work.config.toml",
        "[model_providers.corp]\nbase_url = \"https://llm.corp.example\"\n",
    );
    host.write(
        "home/alice/.codex/auth.json",
        r#"{"OPENAI_API_KEY": "sk-a"}"#,
    );
    let (_, report) = host.scan();
    let mut found = found_in(&report, ".codex/config.toml");
    found.sort();
    assert_eq!(
        found,
        [
            (
                1001,
                s("api.myrelay.example"),
                s("model_providers.myrelay.base_url"),
                "codex"
            ),
            (
                1001,
                s("chat.relay.example"),
                s("profiles.fast.chatgpt_base_url"),
                "codex"
            ),
            (
                1001,
                s("localhost"),
                s("model_providers.ollama.base_url"),
                "codex"
            ),
            (1001, s("oa.relay.example"), s("openai_base_url"), "codex"),
        ]
    );
    assert_eq!(
        found_in(&report, ".codex/work.config.toml"),
        [(
            1001,
            s("llm.corp.example"),
            s("model_providers.corp.base_url"),
            "codex"
        )]
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn gemini_dotenv_files() {
    let host = Host::new("rf-gemini");
    host.write(
        "home/alice/.gemini/.env",
        "# Gemini\nGEMINI_API_KEY=AIza-secret\nexport GOOGLE_GEMINI_BASE_URL=\"https://g.relay.example/v1beta\" # relay\n",
    );
    host.write(
        "home/bob/.env",
        "GEMINI_BASE_URL='http://[::1]:8080'\nOPENAI_BASE_URL = https://o.relay.example  # c\nNOT_WANTED=https://x.example\n",
    );
    let (_, report) = host.scan();
    assert_eq!(
        found_in(&report, ".gemini/.env"),
        [(
            1001,
            s("g.relay.example"),
            s("GOOGLE_GEMINI_BASE_URL"),
            "gemini-cli"
        )]
    );
    assert_eq!(
        found_in(&report, "bob/.env"),
        [
            (1002, s("::1"), s("GEMINI_BASE_URL"), "gemini-cli"),
            (
                1002,
                s("o.relay.example"),
                s("OPENAI_BASE_URL"),
                "gemini-cli"
            ),
        ]
    );
}

#[test]
fn dotenv_syntax() {
    let wanted = vec![s("A_BASE_URL"), s("B_BASE_URL")];
    let text = b"  export\tA_BASE_URL = \"https://a.example/x # not a comment\"\n\
exportB_BASE_URL=https://no.example\n\
#B_BASE_URL=https://commented.example\n\
B_BASE_URL=https://b.example#frag # comment\n\
A_BASE_URL=\n\
A_BASE_URL='https://unterminated.example\n\xff\xfe=bad\n";
    let found = dotenv(text, &wanted);
    assert_eq!(
        found,
        [
            (s("A_BASE_URL"), Some(s("a.example"))),
            (s("B_BASE_URL"), Some(s("b.example"))),
            (s("A_BASE_URL"), Some(s("unterminated.example"))),
        ]
    );
}

/// cc-switch's current schema (farion1231/cc-switch `database/schema.rs`): the columns read.
fn cc_switch_db_at(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE providers (id TEXT NOT NULL, app_type TEXT NOT NULL, name TEXT NOT NULL,
             settings_config TEXT NOT NULL, website_url TEXT, category TEXT, created_at INTEGER,
             sort_index INTEGER, notes TEXT, icon TEXT, icon_color TEXT,
             meta TEXT NOT NULL DEFAULT '{}', is_current BOOLEAN NOT NULL DEFAULT 0,
             in_failover_queue BOOLEAN NOT NULL DEFAULT 0, PRIMARY KEY (id, app_type));
         CREATE TABLE provider_endpoints (id INTEGER PRIMARY KEY AUTOINCREMENT,
             provider_id TEXT NOT NULL, app_type TEXT NOT NULL, url TEXT NOT NULL, added_at INTEGER);
         PRAGMA journal_mode = WAL;",
    )
    .unwrap();
    let rows = [
        (
            "packy",
            "claude",
            r#"{"env": {"ANTHROPIC_BASE_URL": "https://api.packy.example", "ANTHROPIC_AUTH_TOKEN": "sk-db-claude"}}"#,
        ),
        (
            "relay-x",
            "codex",
            r#"{"auth": {"OPENAI_API_KEY": "sk-db-codex"}, "config": "model_provider = \"rx\"\n[model_providers.rx]\nbase_url = \"https://rx.example/v1\"\n"}"#,
        ),
        (
            "gem",
            "gemini",
            r#"{"env": {"GOOGLE_GEMINI_BASE_URL": "https://gem.example", "GEMINI_API_KEY": "sk-db-gem"}, "config": {}}"#,
        ),
        ("broken", "claude", "{not json"),
    ];
    for (id, app, settings) in rows {
        conn.execute(
            "INSERT INTO providers (id, app_type, name, settings_config) VALUES (?1, ?2, ?1, ?3)",
            [id, app, settings],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO provider_endpoints (provider_id, app_type, url) VALUES ('packy', 'claude', 'https://backup.packy.example')",
        [],
    )
    .unwrap();
}

#[test]
fn cc_switch_config_json_and_database() {
    let host = Host::new("rf-ccswitch");
    host.write(
        "home/alice/.cc-switch/config.json",
        r#"{"version": 2,
            "claude": {"providers": {"p1": {"id": "p1", "name": "AnyRouter",
                "settingsConfig": {"env": {"ANTHROPIC_BASE_URL": "https://anyrouter.example",
                                           "ANTHROPIC_AUTH_TOKEN": "sk-cfg"}}}}, "current": "p1"},
            "codex": {"providers": {"c1": {"settingsConfig": {"auth": {"OPENAI_API_KEY": "sk-c"},
                "config": "[model_providers.c1]\nbase_url = \"https://c1.example/v1\"\n"}}}},
            "mcp": {"servers": {}}}"#,
    );
    // v1: providers at the top (Claude only).
    host.write(
        "home/bob/.cc-switch/config.json",
        r#"{"providers": {"old": {"settingsConfig": {"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:15721"}}}}, "current": "old"}"#,
    );
    cc_switch_db_at(&host.path("home/alice/.cc-switch/cc-switch.db"));
    let (_, report) = host.scan();
    let mut cfg = found_in(&report, "alice/.cc-switch/config.json");
    cfg.sort();
    assert_eq!(
        cfg,
        [
            (
                1001,
                s("anyrouter.example"),
                s("claude.providers.p1.env.ANTHROPIC_BASE_URL"),
                "cc-switch"
            ),
            (
                1001,
                s("c1.example"),
                s("codex.providers.c1.config.model_providers.c1.base_url"),
                "cc-switch"
            ),
        ]
    );
    assert_eq!(
        found_in(&report, "bob/.cc-switch/config.json"),
        [(
            1002,
            s("127.0.0.1"),
            s("claude.providers.old.env.ANTHROPIC_BASE_URL"),
            "cc-switch"
        )]
    );
    let mut db = found_in(&report, "cc-switch.db");
    db.sort();
    assert_eq!(
        db,
        [
            (
                1001,
                s("api.packy.example"),
                s("claude.providers.packy.env.ANTHROPIC_BASE_URL"),
                "cc-switch"
            ),
            (
                1001,
                s("backup.packy.example"),
                s("claude.providers.packy.endpoints.url"),
                "cc-switch"
            ),
            (
                1001,
                s("gem.example"),
                s("gemini.providers.gem.env.GOOGLE_GEMINI_BASE_URL"),
                "cc-switch"
            ),
            (
                1001,
                s("rx.example"),
                s("codex.providers.relay-x.config.model_providers.rx.base_url"),
                "cc-switch"
            ),
        ]
    );
    let db_problems = problems_about(&report, "cc-switch.db");
    assert_eq!(db_problems.len(), 1, "{db_problems:?}");
    assert!(
        db_problems[0].contains("claude.providers.broken.settings_config (not valid JSON"),
        "{db_problems:?}"
    );
}

#[test]
fn cursor_state_database() {
    let host = Host::new("rf-cursor");
    let path = host.path("home/alice/.config/Cursor/User/globalStorage/state.vscdb");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB);
         CREATE TABLE cursorDiskKV (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB);",
    )
    .unwrap();
    let user = serde_json::json!({
        "openAIBaseUrl": "https://cursor.relay.example/v1",
        "useOpenAIKey": true,
        "anthropicBaseUrl": "",
        "aiSettings": {"modelConfig": {}},
    })
    .to_string();
    conn.execute(
        "INSERT INTO ItemTable VALUES (?1, ?2)",
        rusqlite::params![CURSOR_APPLICATION_USER, user.as_bytes()],
    )
    .unwrap();
    for (k, v) in [
        ("cursorAuth/openAIKey", "sk-cursor-key"),
        ("cursor/openAIBaseUrl", "\"https://legacy.relay.example\""),
        ("workbench.panel", "{}"),
    ] {
        conn.execute("INSERT INTO ItemTable VALUES (?1, ?2)", [k, v])
            .unwrap();
    }
    drop(conn);
    let (_, report) = host.scan();
    let mut found = found_in(&report, "state.vscdb");
    found.sort();
    assert_eq!(
        found,
        [
            (
                1001,
                s("cursor.relay.example"),
                s("applicationUser.openAIBaseUrl"),
                "cursor"
            ),
            (
                1001,
                s("legacy.relay.example"),
                s("cursor?openAIBaseUrl"),
                "cursor"
            ),
        ]
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn systemd_units_are_scoped_to_their_user() {
    let mut host = Host::new("rf-systemd");
    host.write(
        "etc/systemd/system/agent.service",
        "[Unit]\nDescription=agent\n# Environment=OPENAI_BASE_URL=https://commented.example\n\
[Service]\nUser=alice\nEnvironment=\"OPENAI_BASE_URL=https://svc.relay.example/v1\" OPENAI_API_KEY=sk-unit\n\
ExecStart=/usr/bin/agent\n[Install]\nEnvironment=OPENAI_BASE_URL=https://not-service.example\n",
    );
    // The unit in /usr/lib, overridden by a drop-in in /etc; no User=: root.
    host.write(
        "usr/lib/systemd/system/batch.service",
        "[Service]\nEnvironment=ANTHROPIC_BASE_URL=https://old.example\nExecStart=/bin/true\n",
    );
    host.write(
        "etc/systemd/system/batch.service.d/10-relay.conf",
        "[Service]\nEnvironment=ANTHROPIC_BASE_URL=https://batch.relay.example \\\n  GROQ_BASE_URL=https://groq.relay.example\n",
    );
    host.write(
        "usr/lib/systemd/system/dyn.service",
        "[Service]\nDynamicUser=yes\nEnvironment=GEMINI_BASE_URL=https://dyn.example\n",
    );
    host.write(
        "usr/lib/systemd/system/num.service",
        "[Service]\nUser=1002\nEnvironment=XAI_BASE_URL=https://x.relay.example\n",
    );
    // A copy of agent.service below /etc's wins; a masked unit is a link to /dev/null.
    host.write(
        "lib/systemd/system/agent.service",
        "[Service]\nEnvironment=OPENAI_BASE_URL=https://shadowed.example\n",
    );
    symlink("/dev/null", host.path("etc/systemd/system/masked.service")).unwrap();
    // A unit file not owned by root is not trusted.
    host.own("etc/systemd/system/evil.service", 1002);
    host.write(
        "etc/systemd/system/evil.service",
        "[Service]\nEnvironment=OPENAI_BASE_URL=https://evil.example\n",
    );
    host.write(
        "home/alice/.config/systemd/user/mine.service",
        "[Service]\nEnvironment=OPENAI_API_BASE=https://mine.relay.example\n",
    );
    let (files, report) = host.scan();
    let mut units: Vec<(u32, String, String, Option<String>)> = report
        .findings
        .iter()
        .filter(|f| f.client == "systemd")
        .map(|f| (f.uid, f.host.clone(), f.key.clone(), f.unit.clone()))
        .collect();
    units.sort();
    assert_eq!(
        units,
        [
            (
                0,
                s("batch.relay.example"),
                s("Environment.ANTHROPIC_BASE_URL"),
                Some(s("batch.service"))
            ),
            (
                0,
                s("groq.relay.example"),
                s("Environment.GROQ_BASE_URL"),
                Some(s("batch.service"))
            ),
            (
                1001,
                s("mine.relay.example"),
                s("Environment.OPENAI_API_BASE"),
                Some(s("mine.service"))
            ),
            (
                1001,
                s("svc.relay.example"),
                s("Environment.OPENAI_BASE_URL"),
                Some(s("agent.service"))
            ),
            (
                1002,
                s("x.relay.example"),
                s("Environment.XAI_BASE_URL"),
                Some(s("num.service"))
            ),
            (
                ANY_UID,
                s("dyn.example"),
                s("Environment.GEMINI_BASE_URL"),
                Some(s("dyn.service"))
            ),
        ]
    );
    let batch = files.finding(0, "batch.relay.example").unwrap();
    assert!(
        batch
            .file
            .ends_with("etc/systemd/system/batch.service.d/10-relay.conf")
    );
    assert!(files.finding(4242, "dyn.example").is_some());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("evil.service: owned by uid 1002, not by root"));
}

#[test]
fn unit_syntax() {
    let wanted = vec![s("A_BASE_URL"), s("B_BASE_URL")];
    assert_eq!(
        unit_words(r#"A=1 "B=x y" 'C=z' D=a\ b "E=\"q\"""#),
        ["A=1", "B=x y", "C=z", "D=a b", "E=\"q\""]
    );
    let mut settings = UnitSettings::default();
    let f = Path::new("/u.service");
    parse_unit(
        b"[Service]\nEnvironment=A_BASE_URL=https://a1.example\nEnvironment=\n\
Environment=B_BASE_URL=https://b.example\nEnvironment=B_BASE_URL=https://b2.example\n\
; comment\nUser = bob\n",
        &wanted,
        f,
        &mut settings,
    );
    let env: Vec<(&str, Option<&str>)> = settings
        .env
        .iter()
        .map(|(_, k, h)| (k.as_str(), h.as_deref()))
        .collect();
    assert_eq!(
        env,
        [("Environment.B_BASE_URL", Some("b2.example"))],
        "an empty Environment= resets, a later value replaces"
    );
    assert_eq!(settings.user.as_deref(), Some("bob"));
}

#[test]
fn secrets_never_reach_findings_or_problems() {
    let host = Host::new("rf-secrets");
    host.write(
        "home/alice/.claude/settings.json",
        r#"{
  "apiKey": "sk-ant-SECRET-apikey",
  "apiKeyHelper": "echo sk-ant-SECRET-helper",
  "env": {
    "ANTHROPIC_AUTH_TOKEN": "sk-ant-SECRET-token",
    "ANTHROPIC_API_KEY": "sk-ant-SECRET-key",
    "OPENAI_API_KEY": "sk-proj-SECRET-openai",
    "ANTHROPIC_BASE_URL": "https://user:sk-SECRET-userinfo@relay.example:8443/v1?key=sk-SECRET-query#sk-SECRET-frag",
    "OPENAI_BASE_URL": "sk-proj-SECRET-pasted-into-the-url",
    "GEMINI_BASE_URL": {"nested": "sk-SECRET-nested"}
  },
  "primaryApiKey": "sk-ant-SECRET-primary"
}"#,
    );
    // Malformed files holding secrets: the reasons name positions, never text.
    host.write(
        "home/alice/.claude/settings.local.json",
        "{\"env\": {\"ANTHROPIC_AUTH_TOKEN\": \"sk-SECRET-malformed\" \"x\": 1}}",
    );
    host.write(
        "home/alice/.codex/config.toml",
        "[model_providers.r]\nbase_url = \"https://r.example\"\napi_key = sk-SECRET-unquoted\n",
    );
    // Provider ids are names in key paths; one that looks like a key, or is overlong, is not.
    host.write(
        "home/alice/.cc-switch/config.json",
        r#"{"claude": {"providers": {
            "sk-SECRET-pasted-as-an-id": {"settingsConfig": {"env": {"ANTHROPIC_BASE_URL": "https://id.example"}}},
            "x-SECRET-an-id-far-too-long-to-be-a-name-so-it-is-not-kept-whatever-it-holds": {"settingsConfig": {"env": {"ANTHROPIC_BASE_URL": "https://id2.example"}}}}}}"#,
    );
    let (files, report) = host.scan();
    let debug = format!("{report:?} {files:?} {:?}", files.findings());
    assert!(!debug.contains("SECRET-"), "{debug}");
    assert!(
        debug.contains("relay.example") && debug.contains("settings.local.json: not valid JSON"),
        "{debug}"
    );
    assert!(
        debug.contains("config.toml: not valid TOML: line 3"),
        "{debug}"
    );
    assert!(
        debug.contains("claude.providers.<id not shown>.env.ANTHROPIC_BASE_URL"),
        "{debug}"
    );
    assert!(
        debug.contains("env.OPENAI_BASE_URL: not a URL (value not shown)")
            && debug.contains("env.GEMINI_BASE_URL: not a URL"),
        "{debug}"
    );
    let serialized = serde_json::to_string(files.findings()).unwrap();
    assert!(!serialized.contains("SECRET-"), "{serialized}");
}

#[test]
fn malformed_files_are_problems_naming_the_file() {
    let host = Host::new("rf-malformed");
    host.write("home/alice/.claude/settings.json", "[1, 2]");
    host.write("home/alice/.claude.json", "{\"projects\": {\"/x\": ");
    host.write("home/alice/.cc-switch/config.json", "");
    host.write(
        "home/alice/.cc-switch/cc-switch.db",
        "not a database at all",
    );
    host.write("home/bob/.codex/config.toml", "[a]\nx = 1\n[a]\n");
    let (_, report) = host.scan();
    let expect = [
        ("alice/.claude/settings.json", "not a JSON object"),
        ("alice/.claude.json", "not valid JSON"),
        ("alice/.cc-switch/config.json", "not valid JSON"),
        ("alice/.cc-switch/cc-switch.db", "not"),
        ("bob/.codex/config.toml", "not valid TOML: line 3"),
    ];
    for (file, reason) in expect {
        let p = problems_about(&report, file);
        assert!(
            p.iter().any(|p| p.contains(&format!("{file}: {reason}"))),
            "{file}: {:?}",
            report.problems
        );
    }
    assert!(report.findings.is_empty());
}

#[test]
fn links_out_of_the_home_are_not_followed() {
    let host = Host::new("rf-links");
    // Another user's settings, and a root file, that alice points at.
    host.write(
        "home/bob/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://bob.example"}}"#,
    );
    host.write(
        "etc/relay.toml",
        "[model_providers.x]\nbase_url = \"https://etc.example\"\n",
    );
    symlink(
        host.path("home/bob/.claude"),
        host.path("home/alice/.claude"),
    )
    .unwrap();
    std::fs::create_dir_all(host.path("home/alice/.codex")).unwrap();
    symlink(
        host.path("etc/relay.toml"),
        host.path("home/alice/.codex/config.toml"),
    )
    .unwrap();
    let (files, report) = host.scan();
    assert!(files.hosts_for_uid(1001).next().is_none(), "{:?}", report);
    assert_eq!(
        files.finding(1002, "bob.example").map(|f| f.uid),
        Some(1002)
    );
    for (file, what) in [
        (
            "alice/.claude/settings.json",
            "'.claude' is a symbolic link",
        ),
        (
            "alice/.codex/config.toml",
            "config.toml: a symbolic link; not followed",
        ),
    ] {
        assert!(
            problems_about(&report, file)
                .iter()
                .any(|p| p.contains(what)),
            "{file}: {:?}",
            report.problems
        );
    }
}

#[test]
fn oversized_files_and_fifos_are_not_read() {
    let host = Host::new("rf-size");
    let mut big = String::from("GEMINI_BASE_URL=https://big.example\n");
    big.push_str(&"#".repeat(MAX_FILE as usize));
    host.write("home/alice/.gemini/.env", &big);
    let fifo = host.path("home/alice/.env");
    let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let (_, report) = host.scan();
    assert!(report.findings.is_empty());
    assert!(
        problems_about(&report, ".gemini/.env")
            .iter()
            .any(|p| p.contains("larger than 1048576 bytes")),
        "{:?}",
        report.problems
    );
    assert!(
        problems_about(&report, "alice/.env").is_empty(),
        "a FIFO is skipped quietly"
    );
}

#[test]
fn another_users_file_is_ignored_root_files_only_when_world_readable() {
    let mut host = Host::new("rf-owner");
    // alice lists a project bob owns: bob's settings there are not alice's configuration.
    host.own("srv/shared", 1002);
    host.write(
        "home/alice/.claude.json",
        r#"{"projects": {"/srv/shared": {}, "/srv/mine": {}}}"#,
    );
    host.write(
        "srv/shared/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://planted.example"}}"#,
    );
    host.own("srv/mine", 1001);
    host.write(
        "srv/mine/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://mine.example"}}"#,
    );
    // A root-owned file in alice's home counts if she could read it herself.
    host.own("home/alice/.gemini", 0);
    let env = host.write(
        "home/alice/.gemini/.env",
        "GEMINI_BASE_URL=https://root-managed.example\n",
    );
    host.own("home/alice/.codex/config.toml", 0);
    let private = host.write(
        "home/alice/.codex/config.toml",
        "openai_base_url = \"https://private.example\"\n",
    );
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (files, report) = host.scan();
    let alice: Vec<&str> = files.hosts_for_uid(1001).map(|f| f.host.as_str()).collect();
    assert_eq!(alice, ["mine.example", "root-managed.example"]);
    assert!(
        problems_about(&report, "srv/shared/.claude/settings.json")
            .iter()
            .any(|p| p.contains("owned by uid 1002, not by uid 1001")),
        "{:?}",
        report.problems
    );
    assert!(
        problems_about(&report, ".codex/config.toml")
            .iter()
            .any(|p| p.contains("owned by uid 0")),
        "{:?}",
        report.problems
    );
}

#[test]
fn users_without_a_home_of_their_own_are_skipped() {
    let host = Host::new("rf-users");
    // carol's home is owned by alice (see Host::new): carol is skipped; so is a missing home.
    host.write(
        "home/carol/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://carol.example"}}"#,
    );
    host.write(
        "root/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://root.example"}}"#,
    );
    let (files, report) = host.scan();
    assert!(files.finding(1003, "carol.example").is_none());
    assert!(files.finding(1001, "carol.example").is_none());
    assert_eq!(files.finding(0, "root.example").map(|f| f.uid), Some(0));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (users, dropped) = parse_passwd(PASSWD);
    assert_eq!(dropped, 0);
    assert_eq!(
        users
            .iter()
            .map(|u| (u.name.as_str(), u.uid))
            .collect::<Vec<_>>(),
        [
            ("root", 0),
            ("alice", 1001),
            ("bob", 1002),
            ("svc", 998),
            ("daemon", 1),
            ("carol", 1003)
        ]
    );
    let many: String = (0..MAX_USERS + 3)
        .map(|i| format!("u{i}:x:{i}:{i}::/home/u{i}:/bin/sh\n"))
        .collect();
    assert_eq!(parse_passwd(&many).1, 3);
}

#[test]
fn another_passwd_file_can_be_named() {
    let host = Host::new("rf-passwd");
    let other = host.write("alt/passwd", "zed:x:1001:1001::/home/alice:/bin/sh\n");
    host.write(
        "home/alice/.gemini/.env",
        "GEMINI_BASE_URL=https://zed.example\n",
    );
    let mut files = host.files().with_passwd(other);
    files.scan();
    assert!(files.finding(1001, "zed.example").is_some());
    assert!(files.finding(0, "zed.example").is_none());
}

#[test]
fn hosts_match_canonically_and_exactly() {
    let host = Host::new("rf-match");
    host.write(
        "home/alice/.gemini/.env",
        "GEMINI_BASE_URL=https://Relay.Example.:443/v1\nOPENAI_BASE_URL=http://[::ffff:10.0.0.9]:80\n",
    );
    let (files, _) = host.scan();
    for q in ["relay.example", "RELAY.example.", " relay.example "] {
        assert!(files.finding(1001, q).is_some(), "{q}");
    }
    assert!(files.finding(1001, "10.0.0.9").is_some());
    assert!(files.finding(1001, "::ffff:10.0.0.9").is_some());
    assert!(
        files.finding(1001, "api.relay.example").is_none(),
        "exact only"
    );
    assert!(files.finding(1001, "example").is_none());
    assert!(files.finding(1002, "relay.example").is_none(), "per user");
    assert_eq!(
        canonical_host("[2001:DB8::1]").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(canonical_host("  "), None);
}

#[test]
fn findings_per_user_are_bounded() {
    let host = Host::new("rf-bound");
    let text: String = (0..MAX_FINDINGS_PER_USER + 5)
        .map(|i| format!("[model_providers.p{i}]\nbase_url = \"https://r{i}.example\"\n"))
        .collect();
    host.write("home/alice/.codex/config.toml", &text);
    let (files, report) = host.scan();
    assert_eq!(files.hosts_for_uid(1001).count(), MAX_FINDINGS_PER_USER);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p == "uid 1001: 5 findings beyond the first 256 ignored"),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_rescan_replaces_the_findings() {
    let host = Host::new("rf-rescan");
    let env = host.write("home/bob/.env", "GROQ_BASE_URL=https://one.example\n");
    let mut files = host.files();
    assert_eq!(files.scan().files_read, 1);
    assert!(files.finding(1002, "one.example").is_some());
    std::fs::write(&env, "GROQ_BASE_URL=https://two.example\n").unwrap();
    files.scan();
    assert!(files.finding(1002, "one.example").is_none());
    assert!(files.finding(1002, "two.example").is_some());
}

#[test]
fn sqlite_uris_escape_the_path() {
    assert_eq!(
        sqlite_uri(Path::new("/home/a b/x?y#z%.db")),
        "file:/home/a%20b/x%3Fy%23z%25.db?immutable=1"
    );
}

#[test]
fn inotify_notices_relevant_changes_only() {
    let host = Host::new("rf-inotify");
    std::fs::create_dir_all(host.path("home/alice/.claude")).unwrap();
    let mut files = host.files();
    files.scan();
    assert!(files.as_raw_fd().is_none());
    let watched = files.watch().unwrap();
    assert!(watched >= 3, "{watched}");
    assert!(files.as_raw_fd().is_some());
    assert!(!files.changed(), "nothing happened yet");

    // Claude Code's own churn in ~/.claude is not a change.
    host.write("home/alice/.claude/history.jsonl", "{}\n");
    assert!(!files.changed());
    host.write("home/alice/notes.txt", "x");
    assert!(!files.changed());

    host.write(
        "home/alice/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://new.example"}}"#,
    );
    assert!(files.changed());
    assert!(!files.changed(), "drained");

    // A client directory created later: seen in the home, watched after the rescan.
    std::fs::create_dir(host.path("home/alice/.codex")).unwrap();
    assert!(files.changed());
    files.scan();
    files.watch().unwrap();
    host.write(
        "home/alice/.codex/config.toml",
        "openai_base_url = \"https://c.example\"\n",
    );
    assert!(files.changed());
    files.scan();
    assert!(files.finding(1001, "c.example").is_some());

    // A rename into place (how editors save) counts; so does a deletion.
    let tmp = host.write(
        "home/alice/.codex/tmp.txt",
        "openai_base_url = \"https://d.example\"\n",
    );
    assert!(!files.changed());
    std::fs::rename(&tmp, host.path("home/alice/.codex/config.toml")).unwrap();
    assert!(files.changed());
    std::fs::remove_file(host.path("home/alice/.claude/settings.json")).unwrap();
    assert!(files.changed());
}

#[test]
fn crafted_databases_cannot_spin_or_hide_code_in_views() {
    let host = Host::new("rf-crafted");
    let path = host.path("home/alice/.cc-switch/cc-switch.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    // A view that would never end if it were read.
    conn.execute_batch(
        "CREATE VIEW providers AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
             SELECT 'a' AS id, 'claude' AS app_type, '{}' AS settings_config FROM c;",
    )
    .unwrap();
    drop(conn);
    let (_, report) = host.scan();
    assert!(
        report.findings.is_empty() && report.problems.is_empty(),
        "{report:?}"
    );
    // Any query stops after the step limit.
    let endless = with_sqlite(&path, |c| {
        c.query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            [],
            |r| r.get::<_, i64>(0),
        )
    });
    assert!(endless.unwrap_err().contains("interrupt"));
}
