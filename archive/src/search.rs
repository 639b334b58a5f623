// SPDX-License-Identifier: MIT OR Apache-2.0
//! Plate matching rules, independent of the database: normalisation, wildcard patterns, the
//! OCR-confusion-aware distance that ranks fuzzy matches, and the opaque page cursors.

use gstalpr::alprocr::vote::confusion_key;

/// Longest plate accepted in a query (real plates have at most ~10 characters).
pub const MAX_PLATE_LEN: usize = 32;
/// Fuzzy matches farther than this (one real substitution = 1) are not returned.
pub const MAX_FUZZY_DISTANCE: f64 = 2.0;
/// Cost of replacing a character by one it is often misread as (0/O/D/Q, 1/I/L, ...).
pub const CONFUSION_COST: f64 = 0.25;

/// How `plate` is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    Wildcard,
    Fuzzy,
}

impl Match {
    pub fn parse(s: Option<&str>) -> Result<Match, String> {
        match s.unwrap_or("exact") {
            "" | "exact" => Ok(Match::Exact),
            "wildcard" => Ok(Match::Wildcard),
            "fuzzy" => Ok(Match::Fuzzy),
            other => Err(format!(
                "match={}: expected exact, wildcard or fuzzy",
                truncate(other, 20)
            )),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Upper-case letters and digits only: `ab-123 cd` -> `AB123CD`. Wildcards are kept when
/// `wildcards` is set. Longer than [`MAX_PLATE_LEN`] or nothing left is an error.
pub fn clean_plate(input: &str, wildcards: bool) -> Result<String, String> {
    if input.chars().count() > MAX_PLATE_LEN {
        return Err(format!(
            "plate: at most {MAX_PLATE_LEN} characters, got {}",
            input.chars().count()
        ));
    }
    let s: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || (wildcards && (*c == '*' || *c == '?')))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.is_empty() {
        return Err("plate: no letters or digits".into());
    }
    Ok(s)
}

/// The indexed fuzzy key of a plate: cleaned, each OCR confusion group folded to one character.
pub fn plate_norm(plate: &str) -> String {
    let cleaned: String = plate.chars().filter(char::is_ascii_alphanumeric).collect();
    confusion_key(&cleaned)
}

/// A cleaned wildcard plate (`AB?23*`) as a SQL LIKE pattern (`AB_23%`). Cleaning already
/// removed `%`, `_` and `\`, so nothing else needs escaping.
pub fn like_pattern(cleaned: &str) -> String {
    cleaned
        .chars()
        .map(|c| match c {
            '*' => '%',
            '?' => '_',
            c => c,
        })
        .collect()
}

/// Edit distance where insertions, deletions and substitutions cost 1, except a substitution
/// within one OCR confusion group, which costs [`CONFUSION_COST`].
pub fn ocr_distance(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_uppercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_uppercase()).collect();
    let key = |c: char| confusion_key(&c.to_string());
    let mut prev: Vec<f64> = (0..=b.len()).map(|j| j as f64).collect();
    let mut cur = vec![0.0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = (i + 1) as f64;
        for (j, &cb) in b.iter().enumerate() {
            let sub = if ca == cb {
                0.0
            } else if key(ca) == key(cb) {
                CONFUSION_COST
            } else {
                1.0
            };
            cur[j + 1] = (prev[j] + sub).min(prev[j + 1] + 1.0).min(cur[j] + 1.0);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Newest-first listings: after (first_seen ms, event_id).
    After {
        first_seen_ms: i64,
        event_id: String,
    },
    /// Ranked (fuzzy) listings: skip this many.
    Offset(usize),
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Cursor::After {
                first_seen_ms,
                event_id,
            } => format!("k{first_seen_ms}.{event_id}"),
            Cursor::Offset(n) => format!("o{n}"),
        }
    }

    pub fn parse(s: &str) -> Result<Cursor, String> {
        let bad = || "cursor: not a cursor this server gave".to_string();
        if s.len() > 200 {
            return Err(bad());
        }
        if let Some(n) = s.strip_prefix('o') {
            return n.parse().map(Cursor::Offset).map_err(|_| bad());
        }
        let (ms, id) = s
            .strip_prefix('k')
            .and_then(|r| r.split_once('.'))
            .ok_or_else(bad)?;
        Ok(Cursor::After {
            first_seen_ms: ms.parse().map_err(|_| bad())?,
            event_id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_are_cleaned() {
        assert_eq!(clean_plate("ab-123 cd", false).unwrap(), "AB123CD");
        assert_eq!(clean_plate("ab?2*", true).unwrap(), "AB?2*");
        assert_eq!(clean_plate("ab?2*", false).unwrap(), "AB2");
        assert!(clean_plate("'; drop table x; --", false).is_ok());
        assert!(clean_plate("%_\\", true).is_err());
        assert!(clean_plate(&"A".repeat(10_000), false).is_err());
    }

    #[test]
    fn wildcards_become_like_patterns() {
        assert_eq!(like_pattern("AB?2*"), "AB_2%");
    }

    #[test]
    fn confusions_are_cheaper() {
        assert_eq!(plate_norm("RK3O0AG"), plate_norm("RK300AG"));
        assert_eq!(ocr_distance("RK3O0AG", "RK300AG"), CONFUSION_COST);
        assert_eq!(ocr_distance("RK300AG", "RK300AG"), 0.0);
        assert_eq!(ocr_distance("RK300AG", "RK300AH"), 1.0);
        assert_eq!(ocr_distance("8S1", "B51"), 2.0 * CONFUSION_COST);
        assert_eq!(ocr_distance("AB12", "AB123"), 1.0);
    }

    #[test]
    fn cursors_round_trip() {
        for c in [
            Cursor::Offset(40),
            Cursor::After {
                first_seen_ms: 1_764_201_600_000,
                event_id: "0193-ab.c".into(),
            },
        ] {
            assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        }
        assert!(Cursor::parse("x").is_err());
        assert!(Cursor::parse("kabc.d").is_err());
    }

    #[test]
    fn match_modes() {
        assert_eq!(Match::parse(None).unwrap(), Match::Exact);
        assert_eq!(Match::parse(Some("fuzzy")).unwrap(), Match::Fuzzy);
        assert!(Match::parse(Some("regex")).is_err());
    }
}
