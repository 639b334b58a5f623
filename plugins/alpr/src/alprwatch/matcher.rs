// SPDX-License-Identifier: MIT OR Apache-2.0
//! The OCR-aware distance between a read plate and a watchlist pattern, and the index that
//! finds the entries near a plate without scanning the list.
//!
//! Weights (per character): equal characters cost 0; a substitution inside one of the usual
//! OCR confusion groups (0/O/D/Q, 1/I/L, 2/Z, 5/S, 6/G, 8/B, the groups of
//! [`confusion_key`]) costs [`CONFUSION_COST`] (0.3); any other substitution, an insertion or a
//! deletion costs [`EDIT_COST`] (1.0). With alprwatch's default maximum distance 0.6 a plate
//! therefore matches an entry when it differs by up to two confusions; a list that sets 1.0
//! also forgives three confusions or one ordinary edit.
//!
//! Both costs are at least what the same edit costs between the confusion keys (where a
//! confusion is free and every other edit costs 1), so the plain Levenshtein distance of the
//! keys is a lower bound of the weighted distance: the index ([`BkTree`]) searches the keys
//! with radius `floor(max distance)` and only the few candidates it returns are weighed.

use std::collections::HashMap;

pub use crate::alprocr::vote::confusion_key;

/// Cost of substituting one character by another of its OCR confusion group.
pub const CONFUSION_COST: f32 = 0.3;
/// Cost of any other substitution, of an insertion and of a deletion.
pub const EDIT_COST: f32 = 1.0;

/// The form plates are compared in: upper case, letters and digits only (`ab-12 3` ->
/// `AB123`), so that lists may be written with the separators printed on plates.
pub fn normalize_plate(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

fn class_of(c: char) -> char {
    let mut buf = [0u8; 4];
    confusion_key(c.encode_utf8(&mut buf))
        .chars()
        .next()
        .unwrap_or(c)
}

/// Cost of reading `b` where `a` is written.
pub fn substitution_cost(a: char, b: char) -> f32 {
    if a == b {
        0.0
    } else if class_of(a) == class_of(b) {
        CONFUSION_COST
    } else {
        EDIT_COST
    }
}

/// One element of a pattern: a literal character, `?` (any one character) or `*` (any run,
/// empty included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Char(char),
    Any,
    Star,
}

/// The tokens of a pattern written with `?` and `*` (other characters normalised like plates).
pub fn tokens(pattern: &str) -> Vec<Token> {
    pattern
        .chars()
        .filter_map(|c| match c {
            '?' => Some(Token::Any),
            '*' => Some(Token::Star),
            c if c.is_alphanumeric() => c.to_uppercase().next().map(Token::Char),
            _ => None,
        })
        .collect()
}

/// Weighted edit distance between an exact pattern and a plate (both normalised).
pub fn weighted_distance(pattern: &str, plate: &str) -> f32 {
    let p: Vec<Token> = pattern.chars().map(Token::Char).collect();
    pattern_distance(&p, plate)
}

/// Weighted edit distance between a pattern (literals, `?`, `*`) and a plate: `?` takes any
/// one character for free, `*` any run for free; literals cost as in [`weighted_distance`].
pub fn pattern_distance(pattern: &[Token], plate: &str) -> f32 {
    let text: Vec<char> = plate.chars().collect();
    let mut prev: Vec<f32> = (0..=text.len()).map(|j| j as f32 * EDIT_COST).collect();
    let mut cur = vec![0.0f32; text.len() + 1];
    for tok in pattern {
        match tok {
            Token::Star => {
                cur[0] = prev[0];
                for j in 1..=text.len() {
                    cur[j] = prev[j].min(cur[j - 1]);
                }
            }
            Token::Char(_) | Token::Any => {
                cur[0] = prev[0] + EDIT_COST;
                for j in 1..=text.len() {
                    let sub = match tok {
                        Token::Char(c) => substitution_cost(*c, text[j - 1]),
                        _ => 0.0,
                    };
                    cur[j] = (prev[j - 1] + sub)
                        .min(prev[j] + EDIT_COST)
                        .min(cur[j - 1] + EDIT_COST);
                }
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[text.len()]
}

/// Levenshtein distance of two short strings of chars, stopping early (returning `limit + 1`)
/// once every alignment costs more than `limit`.
fn levenshtein_bounded(a: &[char], b: &[char], limit: usize) -> usize {
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let v = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            cur[j + 1] = v;
            row_min = row_min.min(v);
        }
        if row_min > limit {
            return limit + 1;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(limit + 1)
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    levenshtein_bounded(a, b, usize::MAX - 1)
}

struct Node {
    key: Box<[char]>,
    /// The payloads (entry indices) whose key this is.
    items: Vec<u32>,
    /// (distance to this node's key, child node).
    children: Vec<(u8, u32)>,
}

/// A BK-tree over confusion keys (Levenshtein distance of the keys, a metric), each key
/// holding the indices of the entries that have it. A query with radius `r` returns every
/// entry whose key is within `r` of the plate's key, visiting a small part of the tree.
#[derive(Default)]
pub struct BkTree {
    nodes: Vec<Node>,
    /// Exact-key lookup (radius 0 and the root of every search).
    by_key: HashMap<Box<[char]>, u32>,
    /// Every character of any key, sorted: the keys one edit away from a query are made from
    /// these (radius 1 is answered by lookups, not by walking the tree).
    alphabet: Vec<char>,
}

impl BkTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds entry `item` under `text`'s confusion key.
    pub fn insert(&mut self, text: &str, item: u32) {
        let key: Box<[char]> = confusion_key(text).chars().collect();
        if let Some(&n) = self.by_key.get(&key) {
            self.nodes[n as usize].items.push(item);
            return;
        }
        let new = self.nodes.len() as u32;
        self.nodes.push(Node {
            key: key.clone(),
            items: vec![item],
            children: Vec::new(),
        });
        for &c in key.iter() {
            if let Err(at) = self.alphabet.binary_search(&c) {
                self.alphabet.insert(at, c);
            }
        }
        self.by_key.insert(key.clone(), new);
        if new == 0 {
            return;
        }
        let mut at = 0usize;
        loop {
            let d = levenshtein(&self.nodes[at].key, &key).min(u8::MAX as usize) as u8;
            match self.nodes[at].children.iter().find(|(cd, _)| *cd == d) {
                Some(&(_, child)) => at = child as usize,
                None => {
                    self.nodes[at].children.push((d, new));
                    return;
                }
            }
        }
    }

    /// Calls `found` with every item whose key is within `radius` of `text`'s key.
    pub fn search(&self, text: &str, radius: usize, mut found: impl FnMut(u32)) {
        if self.nodes.is_empty() {
            return;
        }
        let key: Vec<char> = confusion_key(text).chars().collect();
        if radius == 0 {
            if let Some(&n) = self.by_key.get(key.as_slice()) {
                self.nodes[n as usize].items.iter().for_each(|&i| found(i));
            }
            return;
        }
        if radius == 1 {
            self.search_one_edit(&key, found);
            return;
        }
        self.walk(&key, radius, found);
    }

    /// Radius 1 by lookups: every key one deletion, substitution or insertion away from `key`
    /// (over the keys' alphabet) and `key` itself; with plates of 5-8 characters and ~30
    /// characters that is a few hundred hash lookups, far fewer than the nodes a BK-tree walk
    /// with radius 1 visits in a large list.
    fn search_one_edit(&self, key: &[char], mut found: impl FnMut(u32)) {
        let mut seen: Vec<u32> = Vec::new();
        let mut probe: Vec<char> = Vec::with_capacity(key.len() + 1);
        let mut look = |probe: &[char], seen: &mut Vec<u32>| {
            if let Some(&n) = self.by_key.get(probe)
                && !seen.contains(&n)
            {
                seen.push(n);
                self.nodes[n as usize].items.iter().for_each(|&i| found(i));
            }
        };
        look(key, &mut seen);
        for i in 0..key.len() {
            // Deletion at i.
            probe.clear();
            probe.extend_from_slice(&key[..i]);
            probe.extend_from_slice(&key[i + 1..]);
            look(&probe, &mut seen);
            // Substitutions at i.
            probe.clear();
            probe.extend_from_slice(key);
            for &c in &self.alphabet {
                if c != key[i] {
                    probe[i] = c;
                    look(&probe, &mut seen);
                }
            }
        }
        // Insertions.
        for i in 0..=key.len() {
            probe.clear();
            probe.extend_from_slice(&key[..i]);
            probe.push(' ');
            probe.extend_from_slice(&key[i..]);
            for &c in &self.alphabet {
                probe[i] = c;
                look(&probe, &mut seen);
            }
        }
    }

    /// The BK-tree walk, for any radius.
    fn walk(&self, key: &[char], radius: usize, mut found: impl FnMut(u32)) {
        let mut stack = vec![0u32];
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            // Exact beyond radius + the largest child distance is never needed: bound it.
            let d = levenshtein_bounded(&node.key, key, radius + u8::MAX as usize);
            if d <= radius {
                node.items.iter().for_each(|&i| found(i));
            }
            let (lo, hi) = (d.saturating_sub(radius), d + radius);
            for &(cd, child) in &node.children {
                if (lo..=hi).contains(&(cd as usize)) {
                    stack.push(child);
                }
            }
        }
    }

    /// Approximate heap bytes held by the tree (keys, item and child lists, the key map).
    pub fn heap_bytes(&self) -> usize {
        let nodes = self.nodes.capacity() * std::mem::size_of::<Node>();
        let inner: usize = self
            .nodes
            .iter()
            .map(|n| {
                n.key.len() * 4
                    + n.items.capacity() * 4
                    + n.children.capacity() * std::mem::size_of::<(u8, u32)>()
            })
            .sum();
        let map = self.by_key.capacity() * (std::mem::size_of::<(Box<[char]>, u32)>() + 1)
            + self.nodes.iter().map(|n| n.key.len() * 4).sum::<usize>();
        nodes + inner + map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn weights_are_the_documented_ones() {
        assert_eq!(substitution_cost('A', 'A'), 0.0);
        for (a, b) in [
            ('0', 'O'),
            ('O', 'D'),
            ('D', 'Q'),
            ('1', 'I'),
            ('I', 'L'),
            ('8', 'B'),
            ('5', 'S'),
            ('2', 'Z'),
            ('6', 'G'),
        ] {
            assert_eq!(substitution_cost(a, b), CONFUSION_COST, "{a}/{b}");
            assert_eq!(substitution_cost(b, a), CONFUSION_COST, "{b}/{a}");
        }
        for (a, b) in [('0', '8'), ('A', 'B'), ('1', '7'), ('S', 'Z'), ('G', 'C')] {
            assert_eq!(substitution_cost(a, b), EDIT_COST, "{a}/{b}");
        }
        const { assert!(CONFUSION_COST < EDIT_COST) };
    }

    #[test]
    fn distance_counts_confusions_cheaply_and_other_edits_fully() {
        assert!(close(weighted_distance("RK300AG", "RK300AG"), 0.0));
        assert!(close(weighted_distance("RK3O0AG", "RK300AG"), 0.3));
        assert!(close(weighted_distance("RK3OOAG", "RK300A6"), 0.9));
        assert!(close(weighted_distance("RK300AG", "RK301AG"), 1.0));
        // An insertion and a deletion cost one each.
        assert!(close(weighted_distance("RK300AG", "RK300AGX"), 1.0));
        assert!(close(weighted_distance("RK300AG", "K300AG"), 1.0));
        assert!(close(weighted_distance("", "ABC"), 3.0));
        // A confusion plus an ordinary edit.
        assert!(close(weighted_distance("B1234", "81235"), 1.3));
    }

    #[test]
    fn wildcards_take_any_character_for_free() {
        let p = tokens("RK3??AG");
        assert!(close(pattern_distance(&p, "RK300AG"), 0.0));
        assert!(close(pattern_distance(&p, "RK3XYAG"), 0.0));
        assert!(close(pattern_distance(&p, "RK3XYA6"), 0.3));
        assert!(close(pattern_distance(&p, "RK3XAG"), 1.0));
        let star = tokens("B*77");
        assert!(close(pattern_distance(&star, "B77"), 0.0));
        assert!(close(pattern_distance(&star, "BXYZ77"), 0.0));
        assert!(close(pattern_distance(&star, "8XYZ77"), 0.3));
        assert!(close(pattern_distance(&star, "XYZ77"), 1.0));
        assert!(pattern_distance(&star, "BXYZ78") >= 1.0);
        assert_eq!(
            tokens("ab-1?*"),
            vec![
                Token::Char('A'),
                Token::Char('B'),
                Token::Char('1'),
                Token::Any,
                Token::Star
            ]
        );
    }

    #[test]
    fn plates_are_compared_without_separators_or_case() {
        assert_eq!(normalize_plate("ab-12 3"), "AB123");
        assert_eq!(normalize_plate("M·XY 42"), "MXY42");
    }

    #[test]
    fn key_distance_bounds_the_weighted_distance() {
        let pairs = [
            ("RK300AG", "RK3O0A6"),
            ("AB123", "A8I23X"),
            ("XYZ", "ZYX"),
            ("12345", "IZ3S"),
        ];
        for (a, b) in pairs {
            let ka: Vec<char> = confusion_key(a).chars().collect();
            let kb: Vec<char> = confusion_key(b).chars().collect();
            assert!(levenshtein(&ka, &kb) as f32 <= weighted_distance(a, b) + 1e-6);
        }
    }

    #[test]
    fn bk_tree_finds_exactly_what_a_scan_finds() {
        // A deterministic pseudo-random list of plates.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet: Vec<char> = "ABCDEFGHJKLMNOPRSTUVWXYZ0123456789".chars().collect();
        let mut plates = Vec::new();
        for _ in 0..3000 {
            let len = 5 + (x % 3) as usize;
            let mut s = String::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            plates.push(s);
        }
        let mut tree = BkTree::new();
        for (i, p) in plates.iter().enumerate() {
            tree.insert(p, i as u32);
        }
        // Queries: listed plates, and listed plates one edit away (deleted, substituted and
        // inserted characters), so radius 1 (answered by lookups) has neighbours to find.
        let mut queries: Vec<String> = vec!["RK300AG".to_string()];
        for p in plates.iter().step_by(97) {
            let c: Vec<char> = p.chars().collect();
            queries.push(p.clone());
            queries.push(c[1..].iter().collect());
            queries.push(
                c.iter()
                    .enumerate()
                    .map(|(i, &ch)| if i == 2 { 'Z' } else { ch })
                    .collect(),
            );
            queries.push(format!("{}7{}", &p[..3], &p[3..]));
        }
        for radius in 0..=2 {
            for q in &queries {
                let mut got = Vec::new();
                tree.search(q, radius, |i| got.push(i));
                got.sort();
                let qk: Vec<char> = confusion_key(q).chars().collect();
                let want: Vec<u32> = plates
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        let pk: Vec<char> = confusion_key(p).chars().collect();
                        levenshtein(&pk, &qk) <= radius
                    })
                    .map(|(i, _)| i as u32)
                    .collect();
                assert_eq!(got, want, "query {q} radius {radius}");
            }
        }
        assert!(tree.heap_bytes() > 0);
    }

    #[test]
    fn bounded_levenshtein_agrees_below_the_limit() {
        let a: Vec<char> = "KITTEN".chars().collect();
        let b: Vec<char> = "SITTING".chars().collect();
        assert_eq!(levenshtein(&a, &b), 3);
        assert_eq!(levenshtein_bounded(&a, &b, 3), 3);
        assert_eq!(levenshtein_bounded(&a, &b, 2), 3);
        assert_eq!(levenshtein_bounded(&a, &b, 0), 1);
    }
}
