//! The lists compiled into the binary, from `monitor/data/blocklists/` (see the README there).
//!
//! - v2fly `category-ai-!cn` (overseas AI services), read without its `@ads` rules (shared
//!   telemetry hosts such as browser-intake-datadoghq.com are not AI traffic) and split into three
//!   categories by the file each rule comes from (`FILE_CATEGORIES`); rules written directly in
//!   `category-ai-!cn` are ai-provider unless `DIRECT_RULE_CATEGORIES` says otherwise.
//! - `ai-relay.list`: relay and reseller endpoints curated by this project (category in its header).
//! - v2fly `category-ai-cn` (domestic AI services) as ai-domestic.
use std::borrow::Cow;

use super::{
    Builder, Category, ListError,
    load::{CategoryRule, ListFiles, Walk, load_list},
    syntax::{Pattern, RuleLine},
};

const V2FLY_SOURCE: &str = "v2fly/domain-list-community";
/// Upstream commit of the embedded v2fly files (data/blocklists/v2fly/SOURCE.txt).
const V2FLY_VERSION: &str = "v2fly/domain-list-community@c975ccef9c19 (2026-08-19)";
const V2FLY_PREFIX: &str = "builtin:v2fly/";

macro_rules! v2fly_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../data/blocklists/v2fly/", $name)))),*]
    };
}

/// Every embedded v2fly file: the two roots and all they include, transitively.
const V2FLY_FILES: &[(&str, &str)] = v2fly_files![
    "category-ai-!cn",
    "anthropic",
    "bytedance-ai-!cn",
    "dola",
    "cerebras",
    "comfy",
    "comfy-ui-launcher",
    "cursor",
    "elevenlabs",
    "envato",
    "github-copilot",
    "google-deepmind",
    "groq",
    "huggingface",
    "jetbrains-ai",
    "liveperson",
    "manus",
    "openai",
    "perplexity",
    "poe",
    "windsurf",
    "xai",
    "youmind",
    "category-ai-cn",
    "askdiandian",
    "deepseek",
    "doubao",
    "trae",
    "xiaomi-ai",
];

const RELAY_LIST: (&str, &str) = (
    "builtin:ai-relay.list",
    include_str!("../../../data/blocklists/ai-relay.list"),
);

/// Category of the rules of each file reached from `category-ai-!cn`. Every file reached must be
/// listed (a unit test checks), so an upstream update that adds an include is mapped on purpose.
pub(super) const FILE_CATEGORIES: &[(&str, Category)] = &[
    ("category-ai-!cn", Category::AiProvider),
    // First-party model APIs and apps.
    ("anthropic", Category::AiProvider),
    ("bytedance-ai-!cn", Category::AiProvider),
    ("dola", Category::AiProvider),
    ("cerebras", Category::AiProvider),
    ("elevenlabs", Category::AiProvider),
    ("google-deepmind", Category::AiProvider),
    ("groq", Category::AiProvider),
    ("huggingface", Category::AiProvider),
    ("manus", Category::AiProvider),
    ("openai", Category::AiProvider),
    ("perplexity", Category::AiProvider),
    ("xai", Category::AiProvider),
    ("youmind", Category::AiProvider),
    // One front end to many vendors' models.
    ("poe", Category::AiAggregator),
    // Tools whose backends see code or content: coding assistants, creative tools and platforms.
    ("cursor", Category::AiTool),
    ("windsurf", Category::AiTool),
    ("github-copilot", Category::AiTool),
    ("jetbrains-ai", Category::AiTool),
    ("comfy", Category::AiTool),
    ("comfy-ui-launcher", Category::AiTool),
    ("envato", Category::AiTool),
    ("liveperson", Category::AiTool),
];

/// Rules written directly in `category-ai-!cn` that are not first-party AI providers.
pub(super) const DIRECT_RULE_CATEGORIES: &[(&str, Category)] = &[
    ("openrouter.ai", Category::AiAggregator),
    ("gateway.ai.cloudflare.com", Category::AiAggregator),
    ("chutes.ai", Category::AiAggregator),
    ("arena.ai", Category::AiAggregator),
    ("coderabbit.ai", Category::AiTool),
    ("coderabbit.gallery.vsassets.io", Category::AiTool),
    ("deepwiki.com", Category::AiTool),
    ("deepwiki.org", Category::AiTool),
    ("devin.ai", Category::AiTool),
    ("kiro.dev", Category::AiTool),
    ("qoder.com", Category::AiTool),
    ("agentclientprotocol.com", Category::AiTool),
    ("openclaw.ai", Category::AiTool),
    ("clawhub.ai", Category::AiTool),
    ("openspec.dev", Category::AiTool),
    ("plannotator.ai", Category::AiTool),
    ("anythingllm.com", Category::AiTool),
    ("lmstudio.ai", Category::AiTool),
    ("ollama.com", Category::AiTool),
    ("sider.ai", Category::AiTool),
    ("diabrowser.com", Category::AiTool),
    ("diabrowser.engineering", Category::AiTool),
];

/// The order the v2fly split lists are created in; `category_list` indexes it.
const V2FLY_CATEGORIES: [Category; 3] = [
    Category::AiProvider,
    Category::AiAggregator,
    Category::AiTool,
];

struct Embedded;

impl ListFiles for Embedded {
    fn include(&self, _including: &str, name: &str) -> Result<(String, Cow<'static, str>), String> {
        V2FLY_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| (format!("{V2FLY_PREFIX}{n}"), Cow::Borrowed(*text)))
            .ok_or_else(|| format!("include:{name}: no such built-in v2fly list"))
    }
}

/// The category a rule of the overseas list belongs to, by the file it is written in.
pub(super) fn overseas_category(file: &str, rule: &RuleLine<'_>) -> Category {
    let file = file.strip_prefix(V2FLY_PREFIX).unwrap_or(file);
    if file == "category-ai-!cn"
        && let Pattern::Domain(name) | Pattern::Full(name) = &rule.pattern
        && let Some((_, c)) = DIRECT_RULE_CATEGORIES
            .iter()
            .find(|(n, _)| *n == name.as_ref())
    {
        return *c;
    }
    FILE_CATEGORIES
        .iter()
        .find(|(f, _)| *f == file)
        .map_or(Category::AiProvider, |(_, c)| *c)
}

pub(super) fn load(builder: &mut Builder) -> Vec<ListError> {
    let mut errors = load_v2fly(
        builder,
        "category-ai-!cn",
        &V2FLY_CATEGORIES,
        overseas_category,
    );
    errors.extend(load_list(
        builder,
        &Embedded,
        RELAY_LIST.0,
        RELAY_LIST.1,
        CategoryRule::HeaderOr(None),
    ));
    errors.extend(load_v2fly(
        builder,
        "category-ai-cn",
        &[Category::AiDomestic],
        |_, _| Category::AiDomestic,
    ));
    errors
}

/// Loads v2fly list `root` without `@ads` rules as one list per category in `categories`;
/// `category_of(file, rule)` places each rule (it must return one of `categories`).
fn load_v2fly(
    builder: &mut Builder,
    root: &str,
    categories: &[Category],
    category_of: impl Fn(&str, &RuleLine<'_>) -> Category,
) -> Vec<ListError> {
    let (name, text) = match Embedded.include("", root) {
        Ok(found) => found,
        Err(reason) => {
            return vec![ListError {
                file: root.to_string(),
                line: 0,
                reason,
            }];
        }
    };
    let lists: Vec<u32> = categories
        .iter()
        .map(|&c| builder.add_list(&name, c))
        .collect();
    let mut walk = Walk::new(&Embedded);
    walk.run(builder, &name, &text, &["ads"], |file, rule| {
        let category = category_of(file, rule);
        let at = categories.iter().position(|&c| c == category).unwrap_or(0);
        lists[at]
    });
    let sha256 = walk.sha256();
    for &list in &lists {
        let meta = &mut builder.lists[list as usize];
        meta.source = V2FLY_SOURCE.to_string();
        meta.version = V2FLY_VERSION.into();
        meta.sha256 = sha256.clone();
    }
    walk.errors
}
