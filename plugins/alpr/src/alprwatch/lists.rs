// SPDX-License-Identifier: MIT OR Apache-2.0
//! Watchlist files and the matching of a plate against them.
//!
//! A list file is CSV (RFC 4180 quoting, one record per line) with a header line naming at
//! least the columns `list,pattern,label,max_distance,expires`, in any order; more columns may
//! follow and are ignored, except the optional `kind`. Blank lines and lines starting with `#`
//! are skipped.
//!
//! - `list`: the list's name (alerts and metrics are labelled with it). One list may span
//!   several files.
//! - `pattern`: an exact plate (`AB123CD`; separators and case are ignored), a wildcard
//!   pattern (`?` one character, `*` any run: `AB???CD`, `M*42`) or, prefixed with `re:`, a
//!   regular expression matched against the normalised plate (upper case, letters and digits
//!   only: `re:^B[A-Z]{2}\d{3}$`).
//! - `label`: free text carried into the alert (why the plate is listed).
//! - `max_distance`: the largest weighted distance ([`super::matcher`]) at which the entry
//!   matches; empty: the element's `max-distance`. Regular expressions match or not (0).
//! - `expires`: RFC 3339 time after which the entry no longer matches; empty: never.
//! - `kind` (optional column): `deny` (default; a hot list: alert when a plate matches) or
//!   `allow` (a gate list: alert when a plate matches no entry of the list). Empty means
//!   `deny`; all rows of a list must agree.
//!
//! A malformed line makes the whole load fail with an error naming `file:line`, so a reload
//! never installs half a list.

use std::collections::HashMap;
use std::path::Path;

use regex::{Regex, RegexBuilder};

use super::matcher::{self, BkTree, Token};

/// Largest `max_distance` accepted (beyond it nearly every plate matches).
pub const MAX_DISTANCE_LIMIT: f32 = 3.0;
/// Slack for float sums (0.3 + 0.3 + 0.3 must be <= 0.9).
const EPS: f32 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Alert when a plate matches an entry.
    Deny,
    /// Alert when a plate matches no entry.
    Allow,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Deny => "deny",
            ListKind::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Pattern {
    /// Normalised plate text.
    Exact(String),
    Wildcard(Vec<Token>),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Index into the lists.
    pub list: usize,
    /// The pattern as written in the file.
    pub written: String,
    pub pattern: Pattern,
    pub label: String,
    pub max_distance: f32,
    /// Milliseconds since the UNIX epoch.
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListInfo {
    pub name: String,
    pub kind: ListKind,
    pub entries: usize,
}

/// A list that alerts for a plate: for a deny list its nearest matching entry, for an allow
/// list the absence of any (then `entry` and `label` are empty and `distance` is -1).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub list: String,
    pub kind: ListKind,
    pub entry: String,
    pub label: String,
    pub distance: f32,
}

/// What went wrong in a list file; `line` 0 is the whole file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {reason}", file, if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct ListError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// Every loaded list, indexed.
#[derive(Default)]
pub struct Watchlists {
    lists: Vec<ListInfo>,
    entries: Vec<Entry>,
    /// Exact entries, by confusion key.
    index: BkTree,
    /// Search radius of the index: the largest `max_distance` of an exact entry, rounded down.
    radius: usize,
    /// Wildcard and regex entries, checked one by one (lists hold few of them).
    scanned: Vec<u32>,
}

/// Splits one CSV record (no embedded newlines).
fn split_record(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut field));
            at_start = true;
        } else if c == '"' {
            return Err("a quote inside an unquoted field".into());
        } else {
            field.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("an unterminated quoted field".into());
    }
    out.push(field);
    Ok(out)
}

struct Columns {
    list: usize,
    pattern: usize,
    label: usize,
    max_distance: usize,
    expires: usize,
    kind: Option<usize>,
}

fn columns(header: &[String]) -> Result<Columns, String> {
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            format!(
                "header has no `{name}` column (expected list,pattern,label,max_distance,expires)"
            )
        })
    };
    Ok(Columns {
        list: need("list")?,
        pattern: need("pattern")?,
        label: need("label")?,
        max_distance: need("max_distance")?,
        expires: need("expires")?,
        kind: find("kind"),
    })
}

/// Parses a pattern as written in a file.
pub fn parse_pattern(written: &str) -> Result<Pattern, String> {
    if let Some(re) = written.strip_prefix("re:") {
        return RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
            .map(Pattern::Regex)
            .map_err(|e| format!("pattern {written:?}: bad regular expression: {e}"));
    }
    if written.contains(['?', '*']) {
        let toks = matcher::tokens(written);
        if !toks
            .iter()
            .any(|t| matches!(t, Token::Char(_) | Token::Any))
        {
            return Err(format!(
                "pattern {written:?} matches every plate (use an allow list to alert on all)"
            ));
        }
        return Ok(Pattern::Wildcard(toks));
    }
    let norm = matcher::normalize_plate(written);
    if norm.is_empty() {
        return Err(format!(
            "pattern {written:?} has no letters or digits (expected a plate, a wildcard \
             pattern or re:<regular expression>)"
        ));
    }
    Ok(Pattern::Exact(norm))
}

fn parse_expires(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expires {s:?} is not an RFC 3339 time (2026-12-31T23:59:59Z): {e}"))
}

/// The maximum distance of entries whose `max_distance` column is empty: per list where given
/// (property `list-max-distance`), else the element's `max-distance`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaxDefaults {
    pub global: f32,
    pub lists: HashMap<String, f32>,
}

impl From<f32> for MaxDefaults {
    fn from(global: f32) -> Self {
        MaxDefaults {
            global,
            lists: HashMap::new(),
        }
    }
}

impl MaxDefaults {
    /// `global` and a `list=distance,list=distance` spec (empty: none).
    pub fn parse(global: f32, spec: &str) -> Result<Self, String> {
        let mut d = MaxDefaults::from(global);
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (list, value) = item
                .split_once('=')
                .map(|(l, v)| (l.trim(), v.trim()))
                .filter(|(l, _)| !l.is_empty())
                .ok_or_else(|| format!("{item:?}: expected list=distance"))?;
            let v = value
                .parse::<f32>()
                .ok()
                .filter(|v| (0.0..=MAX_DISTANCE_LIMIT).contains(v))
                .ok_or_else(|| {
                    format!(
                        "{item:?}: the distance must be a number from 0 to {MAX_DISTANCE_LIMIT}"
                    )
                })?;
            if d.lists.insert(list.to_string(), v).is_some() {
                return Err(format!("list {list:?} is given twice"));
            }
        }
        Ok(d)
    }

    /// The default of `list`.
    pub fn of(&self, list: &str) -> f32 {
        self.lists.get(list).copied().unwrap_or(self.global)
    }
}

impl Watchlists {
    /// Reads and parses every file of `paths` (in order); `defaults` gives the maximum
    /// distance of entries whose column is empty.
    pub fn load<P: AsRef<Path>>(paths: &[P], defaults: &MaxDefaults) -> Result<Self, ListError> {
        let mut texts = Vec::with_capacity(paths.len());
        for p in paths {
            let name = p.as_ref().display().to_string();
            let text = std::fs::read_to_string(p.as_ref()).map_err(|e| ListError {
                file: name.clone(),
                line: 0,
                reason: format!("cannot read the list file: {e}"),
            })?;
            texts.push((name, text));
        }
        Self::parse(&texts, defaults)
    }

    /// Parses list files given as `(name, contents)`.
    pub fn parse(files: &[(String, String)], defaults: &MaxDefaults) -> Result<Self, ListError> {
        let mut wl = Watchlists::default();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (file, text) in files {
            let err = |line: usize, reason: String| ListError {
                file: file.clone(),
                line,
                reason,
            };
            let mut cols: Option<Columns> = None;
            let mut rows = 0usize;
            for (i, raw) in text.lines().enumerate() {
                let line_no = i + 1;
                let line = raw.trim_end_matches('\r');
                if line.trim().is_empty() || line.trim_start().starts_with('#') {
                    continue;
                }
                let fields = split_record(line).map_err(|e| err(line_no, e))?;
                let Some(c) = &cols else {
                    cols = Some(columns(&fields).map_err(|e| err(line_no, e))?);
                    continue;
                };
                let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
                let name = get(c.list);
                if name.is_empty() {
                    return Err(err(line_no, "empty `list` column".into()));
                }
                let kind = match c.kind.map(get).unwrap_or("") {
                    "" | "deny" => ListKind::Deny,
                    "allow" => ListKind::Allow,
                    other => {
                        return Err(err(
                            line_no,
                            format!("kind {other:?}: expected deny, allow or empty"),
                        ));
                    }
                };
                let written = get(c.pattern);
                let pattern = parse_pattern(written).map_err(|e| err(line_no, e))?;
                let max_distance = match get(c.max_distance) {
                    "" => defaults.of(name),
                    s => match s.parse::<f32>() {
                        Ok(v) if (0.0..=MAX_DISTANCE_LIMIT).contains(&v) => v,
                        _ => {
                            return Err(err(
                                line_no,
                                format!(
                                    "max_distance {s:?}: expected a number from 0 to \
                                     {MAX_DISTANCE_LIMIT}, or empty for the default"
                                ),
                            ));
                        }
                    },
                };
                let expires_ms = match get(c.expires) {
                    "" => None,
                    s => Some(parse_expires(s).map_err(|e| err(line_no, e))?),
                };
                let list = match by_name.get(name) {
                    Some(&l) => {
                        let has = c.kind.is_some_and(|k| !get(k).is_empty());
                        if has && wl.lists[l].kind != kind {
                            return Err(err(
                                line_no,
                                format!(
                                    "list {name:?} is already a {} list",
                                    wl.lists[l].kind.as_str()
                                ),
                            ));
                        }
                        l
                    }
                    None => {
                        wl.lists.push(ListInfo {
                            name: name.to_string(),
                            kind,
                            entries: 0,
                        });
                        by_name.insert(name.to_string(), wl.lists.len() - 1);
                        wl.lists.len() - 1
                    }
                };
                wl.lists[list].entries += 1;
                let idx = wl.entries.len() as u32;
                match &pattern {
                    Pattern::Exact(text) => {
                        wl.index.insert(text, idx);
                        wl.radius = wl.radius.max((max_distance + EPS).floor() as usize);
                    }
                    _ => wl.scanned.push(idx),
                }
                wl.entries.push(Entry {
                    list,
                    written: written.to_string(),
                    pattern,
                    label: get(c.label).to_string(),
                    max_distance,
                    expires_ms,
                });
                rows += 1;
            }
            if cols.is_none() {
                return Err(err(
                    0,
                    "empty list file (expected a header list,pattern,label,max_distance,expires \
                     and entries)"
                        .into(),
                ));
            }
            if rows == 0 {
                return Err(err(0, "the list file has a header but no entries".into()));
            }
        }
        Ok(wl)
    }

    pub fn lists(&self) -> &[ListInfo] {
        &self.lists
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Approximate heap bytes of the index (the BK-tree over the exact entries).
    pub fn index_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    /// Distance of `plate` (normalised) to `entry`, when within its maximum.
    fn distance(entry: &Entry, plate: &str) -> Option<f32> {
        let d = match &entry.pattern {
            Pattern::Exact(text) => matcher::weighted_distance(text, plate),
            Pattern::Wildcard(toks) => matcher::pattern_distance(toks, plate),
            Pattern::Regex(re) => return re.is_match(plate).then_some(0.0),
        };
        (d <= entry.max_distance + EPS).then_some(d)
    }

    /// The lists that alert for `plate` at wall-clock time `now_ms`, in list order: for each
    /// deny list its nearest matching entry (first in file order on a tie); each allow list
    /// none of whose entries matches. An empty plate alerts nothing.
    pub fn hits(&self, plate: &str, now_ms: i64) -> Vec<Hit> {
        let plate = matcher::normalize_plate(plate);
        if plate.is_empty() {
            return Vec::new();
        }
        // Best (distance, entry) per list.
        let mut best: Vec<Option<(f32, u32)>> = vec![None; self.lists.len()];
        let mut consider = |i: u32| {
            let e = &self.entries[i as usize];
            if e.expires_ms.is_some_and(|t| t <= now_ms) {
                return;
            }
            if let Some(d) = Self::distance(e, &plate) {
                let slot = &mut best[e.list];
                let better = match slot {
                    None => true,
                    Some((bd, bi)) => d < *bd - EPS || ((d - *bd).abs() <= EPS && i < *bi),
                };
                if better {
                    *slot = Some((d, i));
                }
            }
        };
        self.index.search(&plate, self.radius, &mut consider);
        self.scanned.iter().for_each(|&i| consider(i));
        self.lists
            .iter()
            .zip(best)
            .filter_map(|(l, b)| match (l.kind, b) {
                (ListKind::Deny, Some((d, i))) => {
                    let e = &self.entries[i as usize];
                    Some(Hit {
                        list: l.name.clone(),
                        kind: l.kind,
                        entry: e.written.clone(),
                        label: e.label.clone(),
                        distance: d,
                    })
                }
                (ListKind::Allow, None) => Some(Hit {
                    list: l.name.clone(),
                    kind: l.kind,
                    entry: String::new(),
                    label: String::new(),
                    distance: -1.0,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "list,pattern,label,max_distance,expires\n";

    fn parse(text: &str) -> Result<Watchlists, ListError> {
        Watchlists::parse(&[("hot.csv".into(), text.into())], &1.0.into())
    }

    fn names(hits: &[Hit]) -> Vec<(&str, &str)> {
        hits.iter()
            .map(|h| (h.list.as_str(), h.entry.as_str()))
            .collect()
    }

    #[test]
    fn exact_entries_match_with_ocr_confusions_within_their_distance() {
        let wl = parse(&format!(
            "{HEADER}stolen,RK300AG,stolen car,,\nstolen,AB-123-CD,fine,0,\n"
        ))
        .unwrap();
        assert_eq!(wl.entry_count(), 2);
        let h = wl.hits("RK3O0AG", 0);
        assert_eq!(names(&h), vec![("stolen", "RK300AG")]);
        assert!((h[0].distance - 0.3).abs() < 1e-5);
        assert_eq!(h[0].label, "stolen car");
        assert_eq!(h[0].kind, ListKind::Deny);
        // One ordinary substitution is within the default 1.0, two are not.
        assert_eq!(wl.hits("RK301AG", 0).len(), 1);
        assert!(wl.hits("RK311AX", 0).is_empty());
        // max_distance 0: only the exact plate (separators and case ignored).
        assert_eq!(names(&wl.hits("ab123cd", 0)), vec![("stolen", "AB-123-CD")]);
        assert!(wl.hits("A8123CD", 0).is_empty());
        assert!(wl.hits("", 0).is_empty());
    }

    #[test]
    fn the_nearest_entry_of_each_list_wins() {
        let wl = parse(&format!(
            "{HEADER}a,RK300AX,far,,\na,RK300AG,near,,\nb,RK3*,any RK3,,\n"
        ))
        .unwrap();
        let h = wl.hits("RK300AG", 0);
        assert_eq!(names(&h), vec![("a", "RK300AG"), ("b", "RK3*")]);
        assert_eq!(h[0].label, "near");
    }

    #[test]
    fn wildcards_and_regular_expressions_match() {
        let wl = parse(&format!(
            "{HEADER}w,M??42,,0,\nr,\"re:^B[A-Z]{{2}}\\d{{3}}$\",,,\n"
        ))
        .unwrap();
        assert_eq!(names(&wl.hits("MXY42", 0)), vec![("w", "M??42")]);
        assert!(wl.hits("MXY43", 0).is_empty());
        assert_eq!(
            names(&wl.hits("b-xy 123", 0)),
            vec![("r", "re:^B[A-Z]{2}\\d{3}$")]
        );
        assert!(wl.hits("BXY1234", 0).is_empty());
    }

    #[test]
    fn expired_entries_do_not_match() {
        let wl = parse(&format!(
            "{HEADER}hot,RK300AG,,,2026-12-01T00:00:00Z\nhot,XY999,,,2026-12-01T01:00:00+01:00\n"
        ))
        .unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(wl.hits("RK300AG", t - 1).len(), 1);
        assert!(wl.hits("RK300AG", t).is_empty());
        // The same instant written with an offset.
        assert!(wl.hits("XY999", t).is_empty());
    }

    #[test]
    fn allow_lists_alert_on_plates_that_are_not_on_them() {
        let wl = parse(
            "list,pattern,label,max_distance,expires,kind,owner\n\
             gate,AB123,staff,0,,allow,x\n\
             gate,CD456,visitor,0,,,y\n",
        )
        .unwrap();
        assert_eq!(wl.lists()[0].kind, ListKind::Allow);
        assert!(wl.hits("AB123", 0).is_empty());
        assert!(wl.hits("CD456", 0).is_empty());
        let h = wl.hits("ZZ999", 0);
        assert_eq!(names(&h), vec![("gate", "")]);
        assert_eq!(h[0].distance, -1.0);
    }

    #[test]
    fn extra_columns_comments_and_column_order_are_accepted() {
        let wl = parse(
            "# hot list\n\
             expires,label,pattern,list,max_distance,notes\n\
             \n\
             ,\"stolen, red\",RK300AG,hot,0.5,\"quoted \"\"note\"\"\"\n",
        )
        .unwrap();
        let h = wl.hits("RK300A6", 0);
        assert_eq!(h[0].label, "stolen, red");
    }

    #[test]
    fn lists_span_files() {
        let wl = Watchlists::parse(
            &[
                ("a.csv".into(), format!("{HEADER}hot,AB123,,,\n")),
                ("b.csv".into(), format!("{HEADER}hot,CD456,,,\n")),
            ],
            &1.0.into(),
        )
        .unwrap();
        assert_eq!(wl.lists().len(), 1);
        assert_eq!(wl.lists()[0].entries, 2);
        assert_eq!(wl.hits("CD456", 0).len(), 1);
    }

    #[test]
    fn bad_lines_are_errors_naming_file_and_line() {
        let cases = [
            (
                format!("{HEADER}hot,AB123,,,\nhot,AB1,,x,\n"),
                3,
                "max_distance",
            ),
            (format!("{HEADER}hot,AB123,,,yesterday\n"), 2, "RFC 3339"),
            (format!("{HEADER}hot,re:([,,,\n"), 2, "regular expression"),
            (format!("{HEADER},AB123,,,\n"), 2, "empty `list`"),
            (format!("{HEADER}hot,--,,,\n"), 2, "no letters"),
            (format!("{HEADER}hot,*,,,\n"), 2, "every plate"),
            (format!("{HEADER}hot,\"AB,,,\n"), 2, "unterminated"),
            (format!("{HEADER}hot,AB123,,9,\n"), 2, "max_distance"),
            (
                "list,pattern,label\nhot,AB123,x\n".to_string(),
                1,
                "max_distance",
            ),
            (
                "list,pattern,label,max_distance,expires,kind\nhot,AB1,,,,allow\nhot,AB2,,,,deny\n"
                    .to_string(),
                3,
                "already a allow list",
            ),
            (
                "list,pattern,label,max_distance,expires,kind\nhot,AB1,,,,maybe\n".to_string(),
                2,
                "kind",
            ),
        ];
        for (text, line, what) in cases {
            let e = parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{text} loaded"));
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(what), "{e}");
            assert!(
                e.to_string().starts_with(&format!("hot.csv:{line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        let e = parse("").err().unwrap();
        assert_eq!(e.to_string(), format!("hot.csv: {}", e.reason));
        assert!(e.reason.contains("empty list file"));
        let e = parse(HEADER).err().unwrap();
        assert!(e.reason.contains("no entries"));
        let e = Watchlists::load(&["/nonexistent/watch.csv"], &1.0.into())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/watch.csv: cannot read")
        );
    }

    #[test]
    fn per_list_default_distances() {
        let d = MaxDefaults::parse(0.0, " gate = 1.0 ,").unwrap();
        assert_eq!((d.of("gate"), d.of("hot")), (1.0, 0.0));
        let text = format!("{HEADER}hot,AB123,,,\ngate,AB123,,,\nstrict,AB123,,0,\n");
        let wl = Watchlists::parse(&[("l.csv".into(), text)], &d).unwrap();
        // One ordinary substitution: within gate's default only (strict's own 0 wins anyway).
        let hits = wl.hits("AB124", 0);
        assert_eq!(hits.len(), 1, "{hits:?}");
        for bad in ["gate", "gate=", "=1", "gate=x", "gate=99", "a=1,a=2"] {
            assert!(MaxDefaults::parse(1.0, bad).is_err(), "{bad}");
        }
        assert_eq!(MaxDefaults::parse(0.6, "").unwrap(), MaxDefaults::from(0.6));
    }
}
