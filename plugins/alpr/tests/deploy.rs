// SPDX-License-Identifier: MIT OR Apache-2.0
//! The deployment files, checked without Docker: docker-compose.yml (images or builds,
//! `depends_on` targets, bind-mounted files, named volumes, service names in URLs), the Prometheus
//! and Grafana provisioning, the dashboard (datasource uid, every `alpr_*` series it queries is
//! one the plugin exports) and the pipelines/*.sh scripts (known elements only; the properties of
//! ALPR elements exist in their committed gst-inspect snapshots).
//!
//! Each check returns its problems as strings; the `*_are_caught` tests feed broken inputs to the
//! same checks, so a check that can no longer fail is noticed too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Elements of this plugin (s3sink included, whether or not it is built yet).
const ALPR_ELEMENTS: &[&str] = &[
    "alprsrc",
    "alprdetect",
    "alprtrack",
    "alprocr",
    "alprcsvsink",
    "kafkasink",
    "s3sink",
];

/// Standard GStreamer elements (core, base, good, bad, ugly, libav) the pipelines may use.
const STANDARD_ELEMENTS: &[&str] = &[
    "autovideosink",
    "avdec_h264",
    "avdec_h265",
    "capsfilter",
    "decodebin",
    "decodebin3",
    "fakesink",
    "filesink",
    "filesrc",
    "fpsdisplaysink",
    "h264parse",
    "h265parse",
    "identity",
    "jpegdec",
    "multiqueue",
    "queue",
    "queue2",
    "rtph264depay",
    "rtph265depay",
    "rtspsrc",
    "tee",
    "uridecodebin",
    "uridecodebin3",
    "v4l2src",
    "videoconvert",
    "videorate",
    "videoscale",
    "videotestsrc",
    "watchdog",
];

const PIPELINES: &[&str] = &["file.sh", "rtsp.sh", "v4l2.sh", "full-stack.sh"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str) -> Result<Value, String> {
    serde_norway::from_str::<Value>(text).map_err(|e| e.to_string())
}

fn read_yaml(rel: &str) -> Value {
    yaml(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn series() -> BTreeSet<&'static str> {
    gstalpr::metrics::SERIES.iter().copied().collect()
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

fn as_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// `${VAR:-default}` / `${VAR-default}` replaced by the default, `${VAR}` by nothing: what
/// Compose does with an unset variable.
fn interpolate_defaults(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..start + end];
        if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
            out.push_str(default);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// (source, target) of a service's volume entries, short or long syntax, with `${VAR:-default}`
/// replaced by its default.
fn volume_mounts(service: &Value) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for v in service["volumes"].as_array().into_iter().flatten() {
        if let Some(s) = v.as_str() {
            let s = interpolate_defaults(s);
            let mut parts = s.splitn(3, ':');
            let first = parts.next().unwrap_or_default().to_string();
            match parts.next() {
                Some(target) => mounts.push((first, target.to_string())),
                // An anonymous volume: only a container path.
                None => mounts.push((String::new(), first)),
            }
        } else {
            let source = interpolate_defaults(v["source"].as_str().unwrap_or_default());
            let target = v["target"].as_str().unwrap_or_default().to_string();
            mounts.push((source, target));
        }
    }
    mounts
}

fn is_bind_source(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

/// Values of a service's `environment`, list or mapping form.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Array(items) => {
            for item in items.iter().filter_map(as_str) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                env.insert(k.clone(), v);
            }
        }
        _ => {}
    }
    env
}

/// The host of `host:port` or `scheme://host:port/...` when it looks like a Compose service
/// name (no dots, not localhost or an address); None for anything else.
fn service_host(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = authority.split_once(':')?;
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !host.chars().all(|c| c.is_ascii_digit());
    let numeric_port = !port.is_empty() && port.chars().all(|c| c.is_ascii_digit());
    (plain && numeric_port && host != "localhost").then_some(host)
}

fn compose_problems(doc: &Value, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(services) = doc["services"].as_object().filter(|s| !s.is_empty()) else {
        return vec!["no services".into()];
    };
    let declared: BTreeSet<&str> = doc["volumes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut used_volumes = BTreeSet::new();

    for (name, service) in services {
        // An image or a build (with its Dockerfile).
        let build = &service["build"];
        if service["image"].as_str().is_none() && build.is_null() {
            problems.push(format!("service {name}: neither image nor build"));
        }
        if !build.is_null() {
            let context = build
                .as_str()
                .or_else(|| build["context"].as_str())
                .unwrap_or(".");
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            let path = root.join(context).join(dockerfile);
            if !path.is_file() {
                problems.push(format!("service {name}: no {}", path.display()));
            }
        }

        // depends_on: list or mapping; targets exist; service_healthy needs a healthcheck.
        let deps: Vec<(String, Option<String>)> = match &service["depends_on"] {
            Value::Array(items) => items
                .iter()
                .filter_map(as_str)
                .map(|d| (d.to_string(), None))
                .collect(),
            Value::Object(map) => map
                .iter()
                .map(|(d, v)| (d.clone(), v["condition"].as_str().map(str::to_string)))
                .collect(),
            _ => Vec::new(),
        };
        for (dep, condition) in deps {
            let Some(target) = services.get(&dep) else {
                problems.push(format!("service {name}: depends_on {dep}, no such service"));
                continue;
            };
            match condition.as_deref() {
                None | Some("service_started") | Some("service_completed_successfully") => {}
                Some("service_healthy") if target.get("healthcheck").is_some() => {}
                Some("service_healthy") => problems.push(format!(
                    "service {name}: waits for {dep} to be healthy, but {dep} has no healthcheck"
                )),
                Some(other) => problems.push(format!(
                    "service {name}: depends_on {dep}: unknown condition {other}"
                )),
            }
        }

        // Volumes: bind sources relative to the repo exist; named volumes are declared.
        let raw: Vec<String> = service["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                v.as_str()
                    .map_or_else(|| v["source"].to_string(), str::to_string)
            })
            .collect();
        for ((source, _target), raw) in volume_mounts(service).into_iter().zip(raw) {
            if source.is_empty() {
                continue;
            }
            if is_bind_source(&source) {
                // Paths chosen through the environment (${VAR:-./x}) are the user's (Compose
                // creates a missing directory); absolute paths are the host's.
                if raw.contains("${") || !source.starts_with('.') {
                    continue;
                }
                if !root.join(&source).exists() {
                    problems.push(format!(
                        "service {name}: bind mount {source} does not exist"
                    ));
                }
            } else {
                used_volumes.insert(source.clone());
                if !declared.contains(source.as_str()) {
                    problems.push(format!(
                        "service {name}: named volume {source} is not declared under volumes:"
                    ));
                }
            }
        }
        for f in service["env_file"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().or_else(|| f["path"].as_str())
                && !root.join(f).is_file()
            {
                problems.push(format!("service {name}: env_file {f} does not exist"));
            }
        }

        // Service names in URLs and host:port values of the environment exist.
        for (key, value) in environment(service) {
            let value = interpolate_defaults(&value);
            for part in value.split(',') {
                if let Some(host) = service_host(part.trim())
                    && !services.contains_key(host)
                {
                    problems.push(format!(
                        "service {name}: {key}={value} names {host}, no such service"
                    ));
                }
            }
        }
    }
    for volume in declared {
        if !used_volumes.contains(volume) {
            problems.push(format!(
                "volume {volume} is declared but no service uses it"
            ));
        }
    }
    for kind in ["configs", "secrets"] {
        for (name, def) in doc[kind].as_object().into_iter().flatten() {
            if let Some(file) = def["file"].as_str()
                && !root.join(file).exists()
            {
                problems.push(format!("{kind}.{name}: file {file} does not exist"));
            }
        }
    }
    problems
}

/// The pipeline service: built here, metrics published, pointed at the compose services.
fn pipeline_service_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let service = &doc["services"]["pipeline"];
    if service.is_null() {
        return vec!["no service `pipeline` (Prometheus scrapes pipeline:8001)".into()];
    }
    if service["build"].is_null() {
        problems.push("service pipeline is not built from the repo's Dockerfile".into());
    }
    let ports: Vec<String> = service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(service["expose"].as_array().into_iter().flatten())
        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
        .collect();
    if !ports.iter().any(|p| p.ends_with("8001")) {
        problems.push(format!("service pipeline does not publish 8001: {ports:?}"));
    }
    let env = environment(service);
    for (key, want) in [
        ("ALPR_KAFKA_BROKERS", "kafka:9092"),
        ("ALPR_SCHEMA_REGISTRY", "http://schema-registry:8081"),
        ("ALPR_S3_ENDPOINT", "http://minio:9000"),
    ] {
        if env.get(key).map(String::as_str) != Some(want) {
            problems.push(format!(
                "service pipeline: {key} should be {want}, is {:?}",
                env.get(key)
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Prometheus and Grafana

/// `alpr_*` series names in a PromQL expression, histogram suffixes removed. String literals
/// (label values) are skipped.
fn alpr_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("alpr_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(&word);
            names.insert(base.to_string());
        }
        word.clear();
        in_string = c == '"';
    }
    names
}

fn unknown_metrics(where_: &str, expr: &str, known: &BTreeSet<&str>) -> Vec<String> {
    alpr_metrics(expr)
        .into_iter()
        .filter(|m| !known.contains(m.as_str()))
        .map(|m| format!("{where_}: {m} is not a series of gstalpr::metrics::SERIES ({expr})"))
        .collect()
}

fn prometheus_problems(config: &Value, services: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    for job in config["scrape_configs"].as_array().into_iter().flatten() {
        for sc in job["static_configs"].as_array().into_iter().flatten() {
            targets.extend(
                sc["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(as_str),
            );
        }
    }
    if !targets.contains(&"pipeline:8001") {
        problems.push(format!(
            "no scrape target pipeline:8001 (targets: {targets:?})"
        ));
    }
    for t in targets {
        if let Some(host) = service_host(t)
            && services.get(host).is_none()
        {
            problems.push(format!("scrape target {t}: no service {host}"));
        }
    }
    problems
}

fn rules_problems(rules: &Value, known: &BTreeSet<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["alert"].as_str().unwrap_or("?");
            match rule["expr"].as_str() {
                Some(expr) => problems.extend(unknown_metrics(name, expr, known)),
                None => problems.push(format!("rule {name} has no expr")),
            }
        }
    }
    problems
}

fn datasource_problems(provisioning: &Value) -> Vec<String> {
    let sources = provisioning["datasources"].as_array();
    let prometheus: Vec<&Value> = sources
        .into_iter()
        .flatten()
        .filter(|d| d["type"] == "prometheus")
        .collect();
    if prometheus.is_empty() {
        return vec!["no data source of type prometheus".into()];
    }
    prometheus
        .into_iter()
        .filter(|d| d["uid"] != "prometheus")
        .map(|d| {
            format!(
                "prometheus data source {} has uid {}, not prometheus",
                d["name"], d["uid"]
            )
        })
        .collect()
}

/// The provider's path is where some service mounts the folder holding alpr.json.
fn dashboard_provider_problems(provider: &Value, compose: &Value, root: &Path) -> Vec<String> {
    let paths: Vec<&str> = provider["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    if paths.is_empty() {
        return vec!["no dashboard provider with options.path".into()];
    }
    let services = compose["services"].as_object().into_iter().flatten();
    let mounted = services
        .flat_map(|(_, s)| volume_mounts(s))
        .any(|(source, target)| {
            source.starts_with('.')
                && root.join(&source).join("alpr.json").is_file()
                && paths.contains(&target.as_str())
        });
    if mounted {
        Vec::new()
    } else {
        vec![format!(
            "no service mounts the folder of alpr.json at a provider path {paths:?}"
        )]
    }
}

fn visit_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        visit_panels(&p["panels"], out);
    }
}

fn dashboard_problems(dash: &Value, known: &BTreeSet<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if dash["uid"] != "alpr" {
        problems.push(format!("dashboard uid is {}, not alpr", dash["uid"]));
    }
    if dash["title"] != "ALPR" {
        problems.push(format!("dashboard title is {}, not ALPR", dash["title"]));
    }
    let mut panels = Vec::new();
    visit_panels(&dash["panels"], &mut panels);
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        if !ids.insert(panel["id"].to_string()) {
            problems.push(format!("panel {title}: duplicate id {}", panel["id"]));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["uid"] != "prometheus" {
            problems.push(format!(
                "panel {title}: datasource {}, not uid prometheus",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title}: no queries"));
        }
        for t in targets {
            if !t["datasource"].is_null() && t["datasource"]["uid"] != "prometheus" {
                problems.push(format!(
                    "panel {title}: query datasource {}",
                    t["datasource"]
                ));
            }
            match t["expr"].as_str() {
                Some(expr) if !expr.trim().is_empty() => {
                    queries += 1;
                    problems.extend(unknown_metrics(title, expr, known));
                }
                _ => problems.push(format!("panel {title}: a query without expr")),
            }
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or("?");
        if !var["datasource"].is_null() && var["datasource"]["uid"] != "prometheus" {
            problems.push(format!("variable {name}: datasource {}", var["datasource"]));
        }
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str());
        if let Some(q) = query {
            problems.extend(unknown_metrics(name, q, known));
        }
    }
    if queries == 0 {
        problems.push("the dashboard has no queries".into());
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// pipelines/*.sh

/// Property names listed under "Element Properties:" of a gst-inspect-1.0 snapshot.
fn snapshot_properties(text: &str) -> BTreeSet<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Element Properties:"))
        .skip(1)
        .filter(|l| l.starts_with("  ") && l[2..].starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l[2..].split([' ', ':']).next().map(str::to_string))
        .collect()
}

/// The words of a shell script as the shell would pass them: quotes removed (a quoted string is
/// one word), backslash-newline joined, comments dropped; `;` is a word of its own.
fn shell_words(script: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if c == '\\' && q == '"' {
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => word.push(n),
                }
            } else {
                word.push(c);
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                in_word = true;
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
            },
            '#' if !in_word => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            ';' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                words.push(";".into());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn is_element_name(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_property_name(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_shell_name(w: &str) -> bool {
    !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One element of a gst-launch description: its factory name and the property names set on it.
#[derive(Debug)]
struct ElementUse {
    factory: String,
    properties: Vec<String>,
}

/// The elements of every gst-launch-1.0 description in a script: the words after
/// `gst-launch-1.0` (and its options), after `!` and at the start of a bash array (`X=(...)`,
/// for descriptions assembled from parts), with the `name=value` words that follow each.
/// Caps (`video/x-raw,...`) and `$expansions` in an element's place are skipped.
fn pipeline_elements(script: &str) -> Vec<ElementUse> {
    let mut elements: Vec<ElementUse> = Vec::new();
    let mut expect_element = false;
    let mut current: Option<usize> = None;
    for word in shell_words(script) {
        let mut w = word.as_str();
        if let Some((name, rest)) = w.split_once("=(")
            && is_shell_name(name)
        {
            w = rest;
            expect_element = true;
            current = None;
        }
        // The end of an array, a subshell or a case pattern (not `$((...))`).
        let closes = w.ends_with(')') && !w.contains('(');
        let w = if closes { w.trim_end_matches(')') } else { w };
        if w == "gst-launch-1.0" || w == "!" {
            expect_element = true;
            current = None;
        } else if w.is_empty() {
        } else if expect_element && w.starts_with('-') {
            // gst-launch-1.0 options (-e, -v).
        } else if expect_element {
            expect_element = false;
            current = None;
            if is_element_name(w) {
                elements.push(ElementUse {
                    factory: w.to_string(),
                    properties: Vec::new(),
                });
                current = Some(elements.len() - 1);
            }
        } else if w.starts_with('$') {
            // "${ARRAY[@]}" among properties (optional ones): the element goes on.
        } else if let Some((key, _)) = w.split_once('=')
            && is_property_name(key)
            && let Some(i) = current
        {
            elements[i].properties.push(key.to_string());
        } else {
            current = None;
        }
        if closes {
            current = None;
            expect_element = false;
        }
    }
    elements
}

/// Problems of one script: unknown elements, properties missing from the ALPR elements'
/// gst-inspect snapshots, and the shape the pipelines share.
fn script_problems(name: &str, script: &str, snapshots: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let elements = pipeline_elements(script);
    for e in &elements {
        let f = e.factory.as_str();
        if ALPR_ELEMENTS.contains(&f) {
            let snapshot = snapshots.join(format!("{f}.txt"));
            let Ok(text) = std::fs::read_to_string(&snapshot) else {
                // No snapshot yet (s3sink while it is written): nothing to check against.
                continue;
            };
            let known = snapshot_properties(&text);
            for p in &e.properties {
                if !known.contains(p) {
                    problems.push(format!(
                        "{name}: {f} has no property {p} (see {})",
                        snapshot.display()
                    ));
                }
            }
        } else if !STANDARD_ELEMENTS.contains(&f) {
            problems.push(format!(
                "{name}: unknown element {f} (neither an ALPR element nor a standard one)"
            ));
        }
    }
    let factories: Vec<&str> = elements.iter().map(|e| e.factory.as_str()).collect();
    for needed in ["alprdetect", "alprtrack", "alprocr"] {
        if !factories.contains(&needed) {
            problems.push(format!("{name}: no {needed}"));
        }
    }
    for (i, f) in factories.iter().enumerate() {
        if *f == "alprdetect" && (i == 0 || factories[i - 1] != "videoconvert") {
            problems.push(format!("{name}: alprdetect without videoconvert before it"));
        }
    }
    // Every branch of a tee (`t. ! ...`) starts with a queue.
    let words = shell_words(script);
    for (i, w) in words.iter().enumerate() {
        let pad_ref = w
            .strip_suffix('.')
            .is_some_and(|n| !n.is_empty() && is_element_name(n));
        if pad_ref
            && (words.get(i + 1).map(String::as_str) != Some("!")
                || words.get(i + 2).map(String::as_str) != Some("queue"))
        {
            problems.push(format!("{name}: branch {w} does not start with a queue"));
        }
    }
    if !script.contains("gst-launch-1.0 -e") {
        problems.push(format!("{name}: does not run gst-launch-1.0 -e"));
    }
    if !script.contains("GST_PLUGIN_PATH=\"${GST_PLUGIN_PATH:-$ROOT/target/release}\"") {
        problems.push(format!(
            "{name}: GST_PLUGIN_PATH does not default to target/release"
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The tests on the real files

#[test]
fn compose_services_volumes_and_dependencies() {
    let compose = read_yaml("docker-compose.yml");
    assert_none("docker-compose.yml", compose_problems(&compose, &root()));
    assert_none("docker-compose.yml", pipeline_service_problems(&compose));
    for needed in [
        "kafka",
        "schema-registry",
        "minio",
        "prometheus",
        "grafana",
        "pipeline",
    ] {
        assert!(
            !compose["services"][needed].is_null(),
            "docker-compose.yml has no service {needed}"
        );
    }
    let kafka = compose["services"]["kafka"].to_string();
    assert!(
        !kafka.contains("ZOOKEEPER") && kafka.contains("KAFKA_PROCESS_ROLES"),
        "Kafka runs in KRaft mode, without ZooKeeper"
    );
    let services = compose["services"].as_object().unwrap();
    assert!(
        services
            .values()
            .any(|s| s.to_string().contains("alpr-plate-images")
                && s["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("minio/mc"))),
        "a minio/mc service creates the bucket alpr-plate-images"
    );
}

#[test]
fn prometheus_scrapes_the_pipeline() {
    let compose = read_yaml("docker-compose.yml");
    let config = read_yaml("deploy/prometheus/prometheus.yml");
    assert_none(
        "deploy/prometheus/prometheus.yml",
        prometheus_problems(&config, &compose["services"]),
    );
    for rule_file in config["rule_files"].as_array().into_iter().flatten() {
        let rel = format!("deploy/prometheus/{}", rule_file.as_str().unwrap());
        assert_none(&rel, rules_problems(&read_yaml(&rel), &series()));
    }
    let mounted = volume_mounts(&compose["services"]["prometheus"])
        .into_iter()
        .any(|(s, t)| {
            s == "./deploy/prometheus/prometheus.yml" && t == "/etc/prometheus/prometheus.yml"
        });
    assert!(
        mounted,
        "the prometheus service mounts deploy/prometheus/prometheus.yml"
    );
}

#[test]
fn grafana_provisioning_and_dashboard() {
    let compose = read_yaml("docker-compose.yml");
    assert_none(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        datasource_problems(&read_yaml(
            "deploy/grafana/provisioning/datasources/prometheus.yml",
        )),
    );
    assert_none(
        "deploy/grafana/provisioning/dashboards/alpr.yml",
        dashboard_provider_problems(
            &read_yaml("deploy/grafana/provisioning/dashboards/alpr.yml"),
            &compose,
            &root(),
        ),
    );
    let dash: Value = serde_json::from_str(&read("deploy/grafana/dashboards/alpr.json"))
        .expect("alpr.json is valid JSON");
    assert_none(
        "deploy/grafana/dashboards/alpr.json",
        dashboard_problems(&dash, &series()),
    );
    // The panels the dashboard promises.
    let text = dash.to_string();
    for m in [
        "alpr_frames_total",
        "alpr_detections_total",
        "alpr_reads_total",
        "alpr_events_total",
        "alpr_processing_seconds_bucket",
        "alpr_sink_connected",
        "alpr_sink_queue_depth",
        "alpr_sink_delivered_total",
        "alpr_sink_failed_total",
        "alpr_sink_dropped_total",
        "alpr_sink_delivery_latency_seconds_bucket",
        "alpr_plate_to_delivery_seconds_bucket",
        "alpr_sink_queue_oldest_age_seconds",
        "alpr_sink_connection_attempts_total",
        "alpr_alerts_total",
    ] {
        assert!(text.contains(m), "the dashboard has no panel on {m}");
    }
}

#[test]
fn pipeline_scripts_use_known_elements_and_properties() {
    let dir = root().join("pipelines");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pipelines/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    scripts.sort();
    for needed in PIPELINES {
        assert!(dir.join(needed).is_file(), "no pipelines/{needed}");
    }
    let mut problems = Vec::new();
    for path in &scripts {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        if !text.starts_with("#!/usr/bin/env bash\n") {
            problems.push(format!("{name}: not a bash script (#!/usr/bin/env bash)"));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            if mode & 0o111 == 0 {
                problems.push(format!("{name}: not executable"));
            }
        }
        problems.extend(script_problems(&name, &text, &snapshots));
    }
    assert_none("pipelines/*.sh", problems);
}

#[test]
fn dockerfile_matches_the_setup_scripts() {
    let dockerfile = read("Dockerfile");
    let lib = read("scripts/lib.sh");
    let packages = lib
        .split_once("APT_PACKAGES=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list.split_whitespace().collect::<Vec<_>>())
        .expect("scripts/lib.sh defines APT_PACKAGES=( ... )");
    assert!(!packages.is_empty());
    let words: BTreeSet<&str> = dockerfile.split_whitespace().collect();
    for p in packages {
        assert!(
            words.contains(p),
            "the Dockerfile build stage does not install {p} (scripts/lib.sh)"
        );
    }
    for needed in [
        "EXPOSE 8001",
        "ORT_DYLIB_PATH=",
        "ALPR_MODELS_DIR=",
        "GST_PLUGIN_PATH=",
        "cargo build --release",
        "scripts/fetch-models",
        "pipelines/full-stack.sh",
        "FROM rust:${RUST_VERSION}-bookworm",
    ] {
        assert!(
            dockerfile.contains(needed),
            "the Dockerfile has no {needed}"
        );
    }
    let ignore = read(".dockerignore");
    for needed in ["target/", "output/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == needed),
            ".dockerignore lacks {needed}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The checks themselves catch broken inputs

#[test]
fn compose_mistakes_are_caught() {
    let doc = yaml(
        r#"
services:
  a:
    image: x
    depends_on: [ghost]
    volumes:
      - undeclared:/data
      - ./no/such/file.yml:/etc/x.yml:ro
    environment:
      BROKERS: nowhere:9092
  b:
    depends_on:
      a:
        condition: service_healthy
  c:
    build: ./no-such-dir
volumes:
  unused:
"#,
    )
    .unwrap();
    let problems = compose_problems(&doc, &root()).join("\n");
    for expected in [
        "depends_on ghost, no such service",
        "named volume undeclared is not declared",
        "bind mount ./no/such/file.yml does not exist",
        "names nowhere, no such service",
        "service b: neither image nor build",
        "a has no healthcheck",
        "no-such-dir",
        "volume unused is declared but no service uses it",
    ] {
        assert!(
            problems.contains(expected),
            "not caught: {expected}\n{problems}"
        );
    }
    assert!(!pipeline_service_problems(&doc).is_empty());
}

#[test]
fn monitoring_mistakes_are_caught() {
    let known = series();
    let services = yaml("{pipeline: {image: x}}").unwrap();
    let config =
        yaml("scrape_configs: [{job_name: j, static_configs: [{targets: ['other:9000']}]}]")
            .unwrap();
    let problems = prometheus_problems(&config, &services).join("\n");
    assert!(
        problems.contains("no scrape target pipeline:8001"),
        "{problems}"
    );
    assert!(problems.contains("no service other"), "{problems}");

    let ds = yaml("datasources: [{name: P, type: prometheus, uid: abc}]").unwrap();
    assert!(!datasource_problems(&ds).is_empty());

    let dash: Value = serde_json::from_str(
        r#"{"uid": "x", "title": "ALPR", "panels": [
             {"id": 1, "type": "row", "title": "r", "panels": [
               {"id": 2, "type": "timeseries", "title": "p", "datasource": {"uid": "other"},
                "targets": [{"expr": "rate(alpr_no_such_total[5m]) + alpr_processing_seconds_bucket"}]}]},
             {"id": 2, "type": "stat", "title": "q", "datasource": {"uid": "prometheus"}, "targets": []}]}"#,
    )
    .unwrap();
    let problems = dashboard_problems(&dash, &known).join("\n");
    for expected in [
        "uid is \"x\"",
        "not uid prometheus",
        "alpr_no_such_total is not a series",
        "duplicate id",
        "panel q: no queries",
    ] {
        assert!(
            problems.contains(expected),
            "not caught: {expected}\n{problems}"
        );
    }
    assert!(
        !problems.contains("alpr_processing_seconds is not"),
        "{problems}"
    );
    assert_eq!(
        alpr_metrics(
            r#"histogram_quantile(0.95, sum by (le) (rate(alpr_sink_delivery_latency_seconds_bucket{sink="alpr_x"}[5m])))"#
        ),
        BTreeSet::from(["alpr_sink_delivery_latency_seconds".to_string()])
    );
}

#[test]
fn script_mistakes_are_caught() {
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let script = r#"#!/usr/bin/env bash
# alprdetect commentprop=9: comments are not checked
SRC=(filesrc location="$V" '!' decodebin)
CMD=(gst-launch-1.0 -e "${SRC[@]}" ! videoconvert !
  alprdetect intervall="$N" threads=2 ! alprtrack ! alprocrr camera-id=x ! tee name=t
  t. ! fakesink  t. ! queue ! kafkasink brokers=k:9092 "${OPTIONAL[@]}" outbox-dir=/tmp
  t. ! queue ! s3sink whatever-it-has=1
)
exec "${CMD[@]}"
"#;
    let problems = script_problems("bad.sh", script, &snapshots).join("\n");
    for expected in [
        "alprdetect has no property intervall",
        "unknown element alprocrr",
        "kafkasink has no property outbox-dir",
        "branch t. does not start with a queue",
        "no alprocr",
        "does not default to target/release",
    ] {
        assert!(
            problems.contains(expected),
            "not caught: {expected}\n{problems}"
        );
    }
    assert!(!problems.contains("threads"), "{problems}");
    assert!(!problems.contains("whatever-it-has") || snapshots.join("s3sink.txt").is_file());
    assert!(!problems.contains("commentprop"), "{problems}");
    let uses = pipeline_elements(script);
    let names: Vec<&str> = uses.iter().map(|e| e.factory.as_str()).collect();
    assert_eq!(
        names,
        [
            "filesrc",
            "decodebin",
            "videoconvert",
            "alprdetect",
            "alprtrack",
            "alprocrr",
            "tee",
            "fakesink",
            "queue",
            "kafkasink",
            "queue",
            "s3sink"
        ]
    );
    assert_eq!(uses[9].properties, ["brokers", "outbox-dir"]);
    let props =
        snapshot_properties(&std::fs::read_to_string(snapshots.join("alprdetect.txt")).unwrap());
    assert!(props.contains("interval") && props.contains("threads") && !props.contains("flags"));
}

/// The archive's dashboard queries the database through the provisioned PostgreSQL data
/// source, which points at the compose database service. (Its SQL runs against a real
/// PostgreSQL in archive/tests/archive.rs.)
#[test]
fn archive_dashboard_and_database_source() {
    let compose = read_yaml("docker-compose.yml");
    let ds = read_yaml("deploy/grafana/provisioning/datasources/archive.yml");
    let source = ds["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["uid"] == "archive-db")
        .expect("a data source with uid archive-db");
    assert_eq!(source["type"], "grafana-postgresql-datasource");
    let host = source["url"].as_str().and_then(service_host).unwrap();
    assert!(
        compose["services"].get(host).is_some(),
        "data source url {}: no compose service {host}",
        source["url"]
    );
    let dash: Value = serde_json::from_str(&read("deploy/grafana/dashboards/archive.json"))
        .expect("archive.json is valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "archive-db", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert!(
                t["rawSql"]
                    .as_str()
                    .is_some_and(|s| s.contains("plate_events")),
                "{}",
                p["title"]
            );
        }
    }
    assert!(
        compose["services"]["archive"]["entrypoint"]
            .to_string()
            .contains("alpr-archive"),
        "the compose archive service runs alpr-archive"
    );
}
