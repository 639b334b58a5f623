// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scoring of plate events against a ground-truthed clip of cars, one car per segment of frames
//! (the slideshow and the drive-by clips of `../shared/media`, see `../shared/ASSETS.md`). Pure:
//! no GStreamer; `alpr-eval video` feeds it and `tests/driveby.rs` runs its unit tests.
//!
//! The truth is one segment per car (`first_frame..=last_frame`, its plate, its motion kind:
//! `approach`, `pass`, `stop` from the `.motion.csv`, `still` without one). The box of the truth
//! CSV is not used: on the drive-by clips it is the plate in the segment's last frame only.
//!
//! Rules:
//! - An event is one revision-0 emission; a later revision of the same track (`emit=early`
//!   updates; every emission has a new `event_id`, so the track id is the key) replaces the text
//!   of the event it revises, it is not another event ([`merge_revisions`]).
//! - An event belongs to the segment in which its first read happened. Frames outside every
//!   segment (the black gap between two cars) belong to no car: an event first read there goes
//!   to the next segment when it lasts into it, else it is `outside`.
//! - Within its segment an event is `right` when its text is the car's plate (`exact`, or equal
//!   once O and 0 are the same letter: `o0`), a `misread` when it is *like* the plate (see
//!   [`is_misread`]: at most a third of the characters differ, or it is a piece of 3 or more
//!   characters of it), else `other`: an unlabelled plate of the scene (the photos show other
//!   cars with real plates).
//! - Per car: read right (exact / O==0) when any of its events is; duplicates are the car's
//!   right-or-misread events beyond the first; misreads are its misread events; missed when it
//!   has no right or misread event.
//! - Other plates of one segment are grouped by text (O==0, and texts within edit distance
//!   0.25 of the longer length as one plate, single link): each distinct plate may have one
//!   event, the rest are `other excess`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

// The plugin's own text helpers: the scorer compares texts as the vote does.
pub use gstalpr::alprocr::vote::{levenshtein, normalize_o0};

/// Motion kind of a segment when the clip has no motion file.
pub const STILL: &str = "still";

/// One car of the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    pub plate: String,
    pub kind: String,
}

/// One plate event as the scorer sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub text: String,
    /// Frame of the event's first read.
    pub first: u64,
    /// Frame of its last read.
    pub last: u64,
    pub reads: u32,
    /// Frame of the best crop (for the events CSV).
    pub frame_number: u64,
    pub track_id: u64,
    pub revision: u32,
    /// Empty when unknown.
    pub event_id: String,
}

/// What an event is within its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The car's plate, exactly.
    Exact,
    /// The car's plate once O and 0 are the same.
    RightO0,
    /// Like the car's plate but not it.
    Misread,
    /// Another plate of the scene.
    Other,
    /// First read outside every segment and not lasting into the next one.
    Outside,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Exact => "exact",
            Class::RightO0 => "right-o0",
            Class::Misread => "misread",
            Class::Other => "other",
            Class::Outside => "outside",
        }
    }
}

/// An event with its segment and class.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub event: Event,
    pub segment: Option<usize>,
    pub class: Class,
}

/// Counts of one motion kind (or of all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Row {
    pub cars: usize,
    /// Events assigned to these cars' segments (right, misread and other plates).
    pub events: usize,
    /// Cars read exactly.
    pub exact: usize,
    /// Cars read right with O==0.
    pub o0: usize,
    /// Right-or-misread events beyond the first of each car.
    pub duplicates: usize,
    /// Misread events.
    pub misreads: usize,
    /// Cars with no right or misread event.
    pub missed: usize,
    /// Events of other plates of the scene.
    pub other: usize,
    /// Other-plate events beyond one per distinct plate of a segment.
    pub other_excess: usize,
}

impl Row {
    fn add(&mut self, r: &Row) {
        self.cars += r.cars;
        self.events += r.events;
        self.exact += r.exact;
        self.o0 += r.o0;
        self.duplicates += r.duplicates;
        self.misreads += r.misreads;
        self.missed += r.missed;
        self.other += r.other;
        self.other_excess += r.other_excess;
    }
}

/// The scorer's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every event, in emission order.
    pub events: Vec<Scored>,
    /// Per motion kind, in the order the kinds first appear in the truth.
    pub kinds: Vec<(String, Row)>,
    /// All kinds; `events` also counts the `outside` ones.
    pub total: Row,
    /// Events first read outside every segment and not lasting into the next one.
    pub outside: usize,
}

/// Frame timing of alprocr, to turn an event's wall-clock `first_seen_ms` / `last_seen_ms`
/// into frames: alprocr stamps every read of a frame with the wall clock taken while it
/// processes that frame, so the read's frame is one whose `[in_ms, out_ms]` (the clock when
/// the buffer entered and left alprocr) holds the stamp and that has a read of the track.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameClock {
    pub frame: u64,
    pub in_ms: i64,
    pub out_ms: i64,
    /// Tracker ids (0 without a tracker) of the plates alprocr read in this frame.
    pub read_tracks: Vec<u64>,
}

/// The first and last frame of an event of tracker id `track` (a split segment's id reduced to
/// its tracker id) that alprocr stamped `first_ms` / `last_ms`: the earliest, respectively
/// latest, frame whose clock window holds the stamp and that has a read of the track (any
/// frame whose window holds it when none has). `None` when no window holds a stamp.
pub fn event_frames(
    clock: &[FrameClock],
    track: u64,
    first_ms: i64,
    last_ms: i64,
) -> Option<(u64, u64)> {
    let pick = |ms: i64, earliest: bool| -> Option<u64> {
        let holds = |c: &&FrameClock| c.in_ms <= ms && ms <= c.out_ms;
        let read = |c: &&FrameClock| c.read_tracks.contains(&track);
        let choose = |it: Vec<&FrameClock>| -> Option<u64> {
            if earliest {
                it.iter().map(|c| c.frame).min()
            } else {
                it.iter().map(|c| c.frame).max()
            }
        };
        let windows: Vec<&FrameClock> = clock.iter().filter(holds).collect();
        let with_read: Vec<&FrameClock> = windows.iter().copied().filter(read).collect();
        choose(with_read).or_else(|| choose(windows))
    };
    let first = pick(first_ms, true)?;
    let last = pick(last_ms, false)?.max(first);
    Some((first, last))
}

/// Edit distance over the longer length, O==0: 0 for the same plate, 1 for nothing in common.
pub fn distance(a: &str, b: &str) -> f64 {
    let (a, b) = (normalize_o0(a), normalize_o0(b));
    let n = a.chars().count().max(b.chars().count());
    if n == 0 {
        0.0
    } else {
        levenshtein(&a, &b) as f64 / n as f64
    }
}

/// Most of a plate's characters a misread may get wrong (see [`is_misread`]).
pub const MISREAD_DISTANCE: f64 = 1.0 / 3.0;

/// Whether `text` (not the plate) is a misread of `plate`: at most a third of the longer
/// string's characters must change to turn one into the other (`distance <= 1/3`: 2 of a 6 or
/// 7 character plate, 1 of 5), or the shorter is a piece of the other, at least 3 characters
/// long (a plate read in part, e.g. cut by the crop, with what was read right).
///
/// Why a third: the reader gets about 93% of characters right (CER 0.07 on the slideshow), so a
/// read of the car's plate has one wrong character, rarely two; three wrong of seven would be
/// about 1% of reads. Another car's plate differs in most positions, except plates of one
/// series (the openalpr EU photos show many `RK###A?` cars side by side: `RK641AL` next to
/// `RK891AU` differ in 3 of 7, 0.43), which a half rule would call misreads. On the drive-by
/// clips the misreads were at 0.14-0.17 and the other plates at 0.43 or above.
pub fn is_misread(text: &str, plate: &str) -> bool {
    let (t, p) = (normalize_o0(text), normalize_o0(plate));
    let (short, long) = if t.len() <= p.len() {
        (&t, &p)
    } else {
        (&p, &t)
    };
    distance(&t, &p) <= MISREAD_DISTANCE + 1e-9
        || (short.chars().count() >= 3 && long.contains(short.as_str()))
}

/// Classifies `text` against the car's `plate`.
pub fn classify(text: &str, plate: &str) -> Class {
    if text == plate {
        Class::Exact
    } else if normalize_o0(text) == normalize_o0(plate) {
        Class::RightO0
    } else if is_misread(text, plate) {
        Class::Misread
    } else {
        Class::Other
    }
}

/// The events a consumer keeps: a revision > 0 replaces the text, reads and best frame of the
/// latest earlier event it revises (the same event id, else the same track: alprocr versions
/// that give each emission a new id keep the track) and extends its frames; it is not another
/// event. Input in emission order.
pub fn merge_revisions(events: impl IntoIterator<Item = Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        let revised = (e.revision > 0)
            .then(|| {
                out.iter()
                    .rposition(|o| !e.event_id.is_empty() && o.event_id == e.event_id)
                    .or_else(|| out.iter().rposition(|o| o.track_id == e.track_id))
            })
            .flatten();
        match revised {
            Some(i) => {
                let o = &mut out[i];
                o.text = e.text;
                o.reads = e.reads;
                o.frame_number = e.frame_number;
                o.revision = e.revision;
                o.first = o.first.min(e.first);
                o.last = o.last.max(e.last);
            }
            None => out.push(e),
        }
    }
    out
}

/// The segment an event belongs to (see the module docs); segments sorted by frame.
pub fn segment_of(segments: &[Segment], e: &Event) -> Option<usize> {
    if let Some(i) = segments
        .iter()
        .position(|s| (s.first..=s.last).contains(&e.first))
    {
        return Some(i);
    }
    segments
        .iter()
        .position(|s| s.first > e.first)
        .filter(|&i| e.last >= segments[i].first)
}

/// Single-link groups of near-equal texts (O==0, distance <= 0.25): how many distinct plates.
pub fn distinct_plates(texts: &[&str]) -> usize {
    let n = texts.len();
    let mut group: Vec<usize> = (0..n).collect();
    fn root(g: &mut [usize], mut i: usize) -> usize {
        while g[i] != i {
            g[i] = g[g[i]];
            i = g[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if distance(texts[i], texts[j]) <= 0.25 {
                let (a, b) = (root(&mut group, i), root(&mut group, j));
                group[a] = b;
            }
        }
    }
    (0..n).filter(|&i| root(&mut group, i) == i).count()
}

/// Scores `events` (merged, see [`merge_revisions`]) against `segments` (sorted by frame).
pub fn score(segments: &[Segment], events: &[Event]) -> Report {
    let scored: Vec<Scored> = events
        .iter()
        .map(|e| {
            let segment = segment_of(segments, e);
            let class = segment.map_or(Class::Outside, |i| classify(&e.text, &segments[i].plate));
            Scored {
                event: e.clone(),
                segment,
                class,
            }
        })
        .collect();
    let mut per_seg: Vec<Vec<&Scored>> = vec![Vec::new(); segments.len()];
    for s in &scored {
        if let Some(i) = s.segment {
            per_seg[i].push(s);
        }
    }
    let mut kinds: Vec<(String, Row)> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (seg, evs) in segments.iter().zip(&per_seg) {
        let k = *index.entry(seg.kind.as_str()).or_insert_with(|| {
            kinds.push((seg.kind.clone(), Row::default()));
            kinds.len() - 1
        });
        let has = |c: &[Class]| evs.iter().any(|s| c.contains(&s.class));
        let car = evs
            .iter()
            .filter(|s| matches!(s.class, Class::Exact | Class::RightO0 | Class::Misread))
            .count();
        let others: Vec<&str> = evs
            .iter()
            .filter(|s| s.class == Class::Other)
            .map(|s| s.event.text.as_str())
            .collect();
        let row = Row {
            cars: 1,
            events: evs.len(),
            exact: usize::from(has(&[Class::Exact])),
            o0: usize::from(has(&[Class::Exact, Class::RightO0])),
            duplicates: car.saturating_sub(1),
            misreads: evs.iter().filter(|s| s.class == Class::Misread).count(),
            missed: usize::from(car == 0),
            other: others.len(),
            other_excess: others.len() - distinct_plates(&others),
        };
        kinds[k].1.add(&row);
    }
    let outside = scored.iter().filter(|s| s.class == Class::Outside).count();
    let mut total = Row::default();
    for (_, r) in &kinds {
        total.add(r);
    }
    total.events += outside;
    Report {
        events: scored,
        kinds,
        total,
        outside,
    }
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / d as f64)
    }
}

impl Report {
    /// The table: one row per motion kind and a total; counts with their % of the cars.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<9} {:>5} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13} {:>12} {:>12}",
            "kind",
            "cars",
            "events",
            "exact",
            "O==0",
            "duplicates",
            "misreads",
            "missed",
            "other plates",
            "other excess"
        );
        let rows = self
            .kinds
            .iter()
            .map(|(k, r)| (k.as_str(), r))
            .chain([("total", &self.total)]);
        for (kind, r) in rows {
            let cell = |n: usize| format!("{n} {:>6}", pct(n, r.cars));
            let _ = writeln!(
                out,
                "{:<9} {:>5} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13} {:>12} {:>12}",
                kind,
                r.cars,
                r.events,
                cell(r.exact),
                cell(r.o0),
                cell(r.duplicates),
                cell(r.misreads),
                cell(r.missed),
                r.other,
                r.other_excess
            );
        }
        out
    }

    /// Every event with its classification, CSV with a header.
    pub fn events_csv(&self, segments: &[Segment]) -> String {
        let mut out = String::from(
            "segment,kind,plate,text,class,reads,first_frame,last_frame,frame_number,track_id,revision\n",
        );
        for s in &self.events {
            let (seg, kind, plate) = match s.segment {
                Some(i) => (
                    i.to_string(),
                    segments[i].kind.as_str(),
                    segments[i].plate.as_str(),
                ),
                None => (String::new(), "", ""),
            };
            let e = &s.event;
            let _ = writeln!(
                out,
                "{seg},{kind},{plate},{},{},{},{},{},{},{},{}",
                e.text,
                s.class.name(),
                e.reads,
                e.first,
                e.last,
                e.frame_number,
                e.track_id,
                e.revision
            );
        }
        out
    }
}

/// The truth CSV `first_frame,last_frame,source_image,plate,x,y,w,h`: `(first, last, plate)`.
pub fn parse_truth(csv: &str) -> Result<Vec<(u64, u64, String)>, String> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() < 4 {
                return Err(format!(
                    "expected first_frame,last_frame,source_image,plate,... in {l:?}"
                ));
            }
            let n = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?} in {l:?}: {e}"));
            Ok((n(f[0])?, n(f[1])?, f[3].to_string()))
        })
        .collect()
}

/// The motion CSV `first_frame,motion`: `(first_frame, kind)`.
pub fn parse_motion(csv: &str) -> Result<Vec<(u64, String)>, String> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (a, b) = l
                .split_once(',')
                .ok_or_else(|| format!("expected first_frame,motion in {l:?}"))?;
            let first = a
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("{a:?} in {l:?}: {e}"))?;
            Ok((first, b.trim().to_string()))
        })
        .collect()
}

/// Segments sorted by frame, each with the motion kind of the motion row that starts at or
/// before its first frame (`still` without motion rows, or before the first one).
pub fn segments(truth: &[(u64, u64, String)], motion: &[(u64, String)]) -> Vec<Segment> {
    let mut motion: Vec<&(u64, String)> = motion.iter().collect();
    motion.sort_by_key(|m| m.0);
    let mut segs: Vec<Segment> = truth
        .iter()
        .map(|(first, last, plate)| Segment {
            first: *first,
            last: *last,
            plate: plate.clone(),
            kind: motion
                .iter()
                .rev()
                .find(|m| m.0 <= *first)
                .map_or(STILL.to_string(), |m| m.1.clone()),
        })
        .collect();
    segs.sort_by_key(|s| s.first);
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: u64, last: u64, plate: &str, kind: &str) -> Segment {
        Segment {
            first,
            last,
            plate: plate.into(),
            kind: kind.into(),
        }
    }

    fn ev(text: &str, first: u64, last: u64) -> Event {
        Event {
            text: text.into(),
            first,
            last,
            reads: 3,
            frame_number: first,
            ..Default::default()
        }
    }

    fn ev_track(text: &str, first: u64, last: u64, track: u64, revision: u32) -> Event {
        Event {
            track_id: track,
            revision,
            ..ev(text, first, last)
        }
    }

    #[test]
    fn classes_right_o0_misread_other() {
        assert_eq!(classify("WA56660", "WA56660"), Class::Exact);
        assert_eq!(classify("BS47O40", "BS47040"), Class::RightO0);
        assert_eq!(classify("WA5666O", "WA56660"), Class::RightO0);
        // One or a few characters wrong or missing.
        assert_eq!(classify("WA56680", "WA56660"), Class::Misread);
        assert_eq!(classify("A56660", "WA56660"), Class::Misread);
        assert_eq!(classify("WA5", "WA56660"), Class::Misread); // a piece of it
        assert_eq!(classify("DWA56660D", "WA56660"), Class::Misread);
        // Two of six wrong: a misread; half wrong: another plate.
        assert_eq!(classify("WA5X6Y", "WA5660"), Class::Misread);
        assert_eq!(classify("WA5XYZ", "WA5660"), Class::Other);
        // Another plate of the same format, or of the same series.
        assert_eq!(classify("RK641AL", "RK891AU"), Class::Other);
        assert_eq!(classify("7XKL231", "4XXF538"), Class::Other);
        assert_eq!(classify("M5XSX", "GWAGEN"), Class::Other);
        // A 2-character coincidence is no piece.
        assert_eq!(classify("AB", "XABCDEFG"), Class::Other);
    }

    #[test]
    fn misread_threshold_is_a_third_of_the_longer_length() {
        assert!(is_misread("ABX1Y3", "ABC123")); // 2 of 6 wrong
        assert!(!is_misread("AXX1Y3", "ABC123")); // 3 of 6 wrong
        assert!(is_misread("ABC1234", "ABC123")); // one more
        assert!(is_misread("A8C12", "ABC123")); // one wrong, one missing: 2 of 6
        assert!(!is_misread("XYC12", "ABC123")); // 3 of 6
        assert!(is_misread("C12", "ABC123")); // a piece of 3
    }

    #[test]
    fn events_go_to_the_segment_of_their_first_read() {
        // Two cars with a black gap (frames 15..=19) between them.
        let segs = [
            seg(0, 14, "AAA111", "approach"),
            seg(20, 34, "BBB222", "pass"),
        ];
        // Read during the first car, even when it lasts into the gap or the next car.
        assert_eq!(segment_of(&segs, &ev("AAA111", 3, 22)), Some(0));
        // First read in the gap, lasting into the next car: the next car's.
        assert_eq!(segment_of(&segs, &ev("BBB222", 17, 21)), Some(1));
        // First read in the gap, ending there: nobody's.
        assert_eq!(segment_of(&segs, &ev("QQQ", 15, 18)), None);
        // After the last car.
        assert_eq!(segment_of(&segs, &ev("QQQ", 40, 41)), None);
        // Hard cuts: the boundary frames.
        let cut = [
            seg(0, 14, "AAA111", "approach"),
            seg(15, 29, "BBB222", "pass"),
        ];
        assert_eq!(segment_of(&cut, &ev("BBB222", 15, 20)), Some(1));
        assert_eq!(segment_of(&cut, &ev("AAA111", 14, 20)), Some(0));
    }

    #[test]
    fn revisions_replace_the_event_they_revise() {
        let merged = merge_revisions([
            ev_track("AB123", 0, 4, 1, 0),
            ev_track("XY999", 2, 6, 2, 0),
            ev_track("AB128", 0, 9, 1, 1),
            ev_track("AB129", 0, 12, 1, 2),
            // A new decision of a track that emitted before (not an update): another event.
            ev_track("AB129", 13, 14, 1, 0),
        ]);
        assert_eq!(merged.len(), 3);
        assert_eq!(
            (merged[0].text.as_str(), merged[0].last, merged[0].revision),
            ("AB129", 12, 2)
        );
        assert_eq!(merged[1].text, "XY999");
        assert_eq!(merged[2].first, 13);
        // A revision whose first emission was never seen stays an event.
        assert_eq!(merge_revisions([ev_track("AB", 0, 1, 5, 1)]).len(), 1);
        // The event id, when there is one, names the event revised (here under another track).
        let with_id = |text, first, last, track, revision, id: &str| Event {
            event_id: id.into(),
            ..ev_track(text, first, last, track, revision)
        };
        let merged = merge_revisions([
            with_id("AB123", 0, 4, 1, 0, "a"),
            with_id("AB123", 5, 8, 1, 0, "b"),
            with_id("AB124", 9, 12, 3, 1, "a"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].text.as_str(), merged[0].last), ("AB124", 12));
        assert_eq!(merged[1].text, "AB123");
    }

    #[test]
    fn near_equal_other_plates_are_one_plate() {
        assert_eq!(distinct_plates(&[]), 0);
        assert_eq!(distinct_plates(&["KL0123", "KLO123", "KL0128"]), 1);
        assert_eq!(distinct_plates(&["KL0123", "ZZ9876"]), 2);
        // Single link: A~B and B~C make one plate even when A and C are further apart.
        assert_eq!(distinct_plates(&["ABCDEFGH", "ABCDEYXH", "ABCZZYXH"]), 1);
    }

    #[test]
    fn per_car_and_per_kind_counts() {
        let segs = [
            seg(0, 14, "AAA111", "approach"),
            seg(20, 34, "BBBOOO", "pass"),
            seg(40, 54, "CCC333", "approach"),
            seg(60, 74, "DDD444", "stop"),
        ];
        let events = [
            // Car 0: right, then again (a duplicate), plus a misread (duplicate and misread).
            ev("AAA111", 2, 8),
            ev("AAA111", 10, 14),
            ev("AAA117", 12, 14),
            // Car 1: first read in the gap, lasting into it, right only with O==0; the same
            // other plate twice (one excess) and another once.
            ev("BBB000", 17, 30),
            ev("ZZ9O99", 21, 25),
            ev("ZZ9099", 27, 29),
            ev("QQ1234", 22, 23),
            // Car 2: nothing of it, one other plate.
            ev("MM5555", 41, 44),
            // Car 3: a misread only.
            ev("DDD44", 61, 70),
            // In a gap, ending there.
            ev("GAP1", 56, 58),
        ];
        let r = score(&segs, &events);
        let classes: Vec<Class> = r.events.iter().map(|s| s.class).collect();
        use Class::*;
        assert_eq!(
            classes,
            vec![
                Exact, Exact, Misread, RightO0, Other, Other, Other, Other, Misread, Outside
            ]
        );
        assert_eq!(r.outside, 1);
        let kinds: Vec<&str> = r.kinds.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["approach", "pass", "stop"]);
        let approach = r.kinds[0].1;
        assert_eq!(
            approach,
            Row {
                cars: 2,
                events: 4,
                exact: 1,
                o0: 1,
                duplicates: 2,
                misreads: 1,
                missed: 1,
                other: 1,
                other_excess: 0,
            }
        );
        let pass = r.kinds[1].1;
        assert_eq!(
            pass,
            Row {
                cars: 1,
                events: 4,
                exact: 0,
                o0: 1,
                duplicates: 0,
                misreads: 0,
                missed: 0,
                other: 3,
                other_excess: 1,
            }
        );
        let stop = r.kinds[2].1;
        assert_eq!((stop.misreads, stop.missed, stop.o0), (1, 0, 0));
        assert_eq!(r.total.cars, 4);
        assert_eq!(r.total.events, 10);
        assert_eq!(r.total.duplicates, 2);
        assert_eq!(r.total.misreads, 2);
        let table = r.table();
        assert!(table.lines().count() == 5, "{table}");
        assert!(table.contains("total"), "{table}");
        let csv = r.events_csv(&segs);
        assert_eq!(csv.lines().count(), 11);
        assert!(
            csv.contains("\n1,pass,BBBOOO,BBB000,right-o0,3,17,30,17,0,0\n"),
            "{csv}"
        );
        assert!(csv.ends_with(",,,GAP1,outside,3,56,58,56,0,0\n"), "{csv}");
    }

    #[test]
    fn truth_and_motion_files_make_segments() {
        let truth = parse_truth(
            "first_frame,last_frame,source_image,plate,x,y,w,h\n\
             20,34,b.jpg,BBB222,1,2,3,4\n0,14,a.jpg,AAA111,1,2,3,4\n\n",
        )
        .unwrap();
        assert_eq!(truth[0], (20, 34, "BBB222".to_string()));
        let motion = parse_motion("first_frame,motion\n0,approach\n20,pass\n").unwrap();
        let segs = segments(&truth, &motion);
        assert_eq!(segs[0], seg(0, 14, "AAA111", "approach"));
        assert_eq!(segs[1], seg(20, 34, "BBB222", "pass"));
        assert!(segments(&truth, &[]).iter().all(|s| s.kind == STILL));
        assert!(parse_truth("h\n1,x,a,B\n").is_err());
        assert!(parse_motion("h\nnope\n").is_err());
    }

    #[test]
    fn wall_clock_stamps_become_frames() {
        let c = |frame, in_ms, out_ms, tracks: &[u64]| FrameClock {
            frame,
            in_ms,
            out_ms,
            read_tracks: tracks.to_vec(),
        };
        let clock = [
            c(0, 100, 100, &[]),
            c(1, 100, 108, &[7]),
            c(2, 108, 108, &[]),
            c(3, 108, 115, &[7, 9]),
            c(4, 115, 121, &[7]),
            c(5, 121, 121, &[]),
        ];
        // A stamp that several windows hold (frames that met within one millisecond): the
        // frames with a read of the track, the earliest for the first read, the latest for the
        // last.
        assert_eq!(event_frames(&clock, 7, 100, 121), Some((1, 4)));
        assert_eq!(event_frames(&clock, 7, 108, 115), Some((1, 4)));
        assert_eq!(event_frames(&clock, 9, 110, 110), Some((3, 3)));
        // No read of the track in the window: any frame of the window.
        assert_eq!(event_frames(&clock, 5, 121, 121), Some((4, 5)));
        assert_eq!(event_frames(&clock, 7, 10, 20), None);
    }
}
