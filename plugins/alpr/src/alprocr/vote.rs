// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track aggregation of OCR reads into one plate decision.
//!
//! A tracked plate is read many times, at different sizes, blur and angles. Single reads are
//! often wrong in one character; the right answer is usually what the good reads agree on. The
//! vote, run over all reads kept for a track:
//!
//! 1. Every read gets a weight `w = confidence * quality` (times a format penalty, see
//!    [`FormatMode`]), where `confidence` is the read's text confidence (min over its slots, see
//!    `ocrmodel::PlateRead::confidence`) and `quality` the crop quality in 0..=1.
//! 2. Reads are clustered by length (the OCR has fixed slots, so a read that lost or gained a
//!    character is a different hypothesis, not a noisy copy). The cluster with the largest summed
//!    `w` wins.
//! 3. Inside the winning cluster each position is voted separately: a read adds
//!    `quality * p(c)` (times the format penalty) to every character `c` it proposes there (its
//!    own character with its char confidence, plus any alternatives it carries). The
//!    per-character probability is used here instead of the whole-read confidence so that a read
//!    unsure about one position does not lose its say on the positions it is sure about. The best
//!    character per position wins.
//! 4. Confidences: `char_confidence[i] = sum_r quality_r * p_r(winner_i) / sum_r quality_r` over
//!    the cluster, i.e. the quality-weighted share of the cluster that backs the winner times the
//!    mean probability those reads gave it. The decision confidence is
//!    `cluster_share * min(min_i char_confidence[i], cluster_confidence)`, where `cluster_share`
//!    is the winning cluster's part of the total weight and `cluster_confidence` the
//!    quality-weighted mean of the cluster reads' own text confidences (which, unlike the
//!    character probabilities, include how sure each read was about where the plate ends). A
//!    single read therefore yields exactly its own confidence; agreeing reads do not push it
//!    above their own confidence, which is deliberate: reads of one track share blur, angle and
//!    lighting and are far from independent evidence.
//!
//! Gates and emission policies are in [`VoterConfig`]; [`TrackVoter::push`] and
//! [`TrackVoter::finish`] implement them so the element only forwards what they return.

use regex::Regex;

/// Added to every weight so that reads with zero confidence or quality still break ties by
/// count, and a track whose reads all have zero weight can still be decided.
const WEIGHT_EPS: f32 = 1e-6;

/// Errors in voting configuration (bad property values).
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("invalid plate format regex `{pattern}`: {source}")]
    Format {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("invalid vote setting `{field}`: {reason}")]
    Setting { field: &'static str, reason: String },
}

/// One OCR read of a tracked plate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoteRead {
    /// Plate text, padding already removed.
    pub text: String,
    /// Text confidence in 0..=1 (e.g. `PlateRead::confidence`).
    pub confidence: f32,
    /// Probability of each character of `text`. If the length does not match the text, missing
    /// entries are filled with `confidence` and extra ones ignored.
    pub char_confidences: Vec<f32>,
    /// Optional per-character alternatives `(char, probability)` (e.g.
    /// `PlateRead::char_alternatives`). They let a position be won by a character that was
    /// second-best in several reads ("soft" voting). Ignored if not one list per character.
    pub char_alternatives: Option<Vec<Vec<(char, f32)>>>,
    /// Crop quality in 0..=1 (e.g. `ocrmodel::crop_quality(..).score`).
    pub quality: f32,
    /// Detector confidence of the plate box. Reported only: `crop_quality` already folds it into
    /// `quality`, so it is not counted a second time in the weight.
    pub detector_confidence: f32,
    /// Frame number of the read (for picking the best crop).
    pub frame: u64,
    /// Presentation timestamp of the read, in nanoseconds, if known.
    pub timestamp_ns: Option<u64>,
    /// Region (country) guess of the model and its probability, if any.
    pub region: Option<(String, f32)>,
}

/// What to do with reads that do not match the plate format regex.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FormatMode {
    /// Ignore them entirely (they still count in `total_reads`). For deployments with one
    /// well-known plate format, where a non-matching read is certainly wrong.
    Drop,
    /// Multiply their weight by this factor (0..=1). The default, [`FormatMode::DEFAULT_PENALTY`],
    /// because a format regex rarely covers every plate (foreign, vanity, temporary plates) and a
    /// track with only non-matching reads should still produce its best guess.
    Penalize(f32),
}

impl FormatMode {
    /// Weight factor of non-matching reads in the default mode.
    pub const DEFAULT_PENALTY: f32 = 0.1;
}

impl Default for FormatMode {
    fn default() -> Self {
        FormatMode::Penalize(Self::DEFAULT_PENALTY)
    }
}

/// An expected plate format: a regex matched against the whole read text.
#[derive(Debug, Clone)]
pub struct PlateFormat {
    pattern: String,
    regex: Regex,
    mode: FormatMode,
}

impl PlateFormat {
    /// Compiles `pattern`, anchored at both ends (`^(?:pattern)$`) so that `[A-Z]{2}[0-9]{3}`
    /// means exactly that and not "contains".
    pub fn new(pattern: &str, mode: FormatMode) -> Result<Self, VoteError> {
        if let FormatMode::Penalize(f) = mode
            && !(0.0..=1.0).contains(&f)
        {
            return Err(VoteError::Setting {
                field: "format penalty",
                reason: format!("{f} is not in 0..=1"),
            });
        }
        let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| VoteError::Format {
            pattern: pattern.to_string(),
            source: Box::new(e),
        })?;
        Ok(PlateFormat {
            pattern: pattern.to_string(),
            regex,
            mode,
        })
    }

    /// The pattern as given (unanchored).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What happens to non-matching reads.
    pub fn mode(&self) -> FormatMode {
        self.mode
    }

    /// Whether `text` matches the whole pattern.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// When a track's decision is handed to the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitMode {
    /// Only at [`TrackVoter::finish`]: one event per track, with all evidence.
    #[default]
    OnTrackEnd,
    /// As soon as `agree` reads agree exactly with the decision (low latency, e.g. barriers).
    /// Later a different decision that is itself backed by `agree` exact reads is emitted as an
    /// update; at track end the final decision is emitted as an update only if it differs from
    /// the last one emitted. Requiring `agree` reads for mid-track updates is hysteresis: without
    /// it a close vote would flip-flop and spam updates.
    Early { agree: usize },
    /// After every read (live display / debugging); [`DecisionKind::Refresh`] marks repeats.
    EveryRead,
}

/// Voting policy, shared by all tracks of an element.
#[derive(Debug, Clone)]
pub struct VoterConfig {
    /// Minimum number of reads in the winning length cluster for any decision to be emitted.
    /// Default 1 so that a plate seen once (a still image, a car passing in a few frames) still
    /// produces an event when its track ends; raise it to trade recall for precision. It counts
    /// the cluster (pooled evidence), not exact matches: the per-position vote may assemble a
    /// text that no single read had.
    pub min_reads: usize,
    /// Minimum decision confidence (0..=1) for emission. Default 0 (off).
    pub min_confidence: f32,
    /// Optional plate format filter.
    pub format: Option<PlateFormat>,
    /// When decisions are emitted.
    pub emit: EmitMode,
    /// Most reads kept per track (default 256). Past it the lowest-weight read is evicted, which
    /// bounds memory and the per-read re-vote cost for a car parked in view for hours.
    pub max_reads: usize,
}

impl Default for VoterConfig {
    fn default() -> Self {
        VoterConfig {
            min_reads: 1,
            min_confidence: 0.0,
            format: None,
            emit: EmitMode::OnTrackEnd,
            max_reads: 256,
        }
    }
}

impl VoterConfig {
    /// Checks the settings; call when properties change to report bad values. [`TrackVoter::new`]
    /// does not fail: it clamps the same values into range.
    pub fn validate(&self) -> Result<(), VoteError> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(VoteError::Setting {
                field: "min_confidence",
                reason: format!("{} is not in 0..=1", self.min_confidence),
            });
        }
        if self.max_reads == 0 {
            return Err(VoteError::Setting {
                field: "max_reads",
                reason: "must be at least 1".into(),
            });
        }
        if self.emit == (EmitMode::Early { agree: 0 }) {
            return Err(VoteError::Setting {
                field: "agree",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// How a decision relates to what this track already emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// The first decision emitted for the track.
    New,
    /// A different text than the last emitted decision: it replaces it.
    Update,
    /// The same text as the last emitted decision, sent again ([`EmitMode::EveryRead`] only).
    Refresh,
}

/// A plate decision for a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub text: String,
    /// `cluster_share * min(min_i char_confidences[i], cluster_confidence)`, in 0..=1 (see the
    /// module docs).
    pub confidence: f32,
    /// Per character: quality-weighted share of the cluster backing it times their probability.
    pub char_confidences: Vec<f32>,
    /// Reads whose text is exactly `text`.
    pub reads: usize,
    /// Reads in the winning length cluster (what `min_reads` is checked against).
    pub cluster_reads: usize,
    /// All reads pushed to the track, including empty, dropped and evicted ones.
    pub total_reads: usize,
    /// Push index (0-based, counting every push) of the highest-quality read matching `text`
    /// (or, if none matches exactly, the closest read of the cluster): the crop to publish.
    pub best_read_index: usize,
    /// Frame number of that read.
    pub best_frame: u64,
    /// Timestamp of that read.
    pub best_timestamp_ns: Option<u64>,
    /// Weighted majority region of the cluster and the share of weight behind it.
    pub region: Option<(String, f32)>,
    /// Whether `text` matches the plate format; `None` without a format.
    pub matches_format: Option<bool>,
    pub kind: DecisionKind,
    /// Made by [`TrackVoter::finish`].
    pub at_track_end: bool,
}

impl Decision {
    /// True if this decision corrects an earlier emitted one.
    pub fn is_update(&self) -> bool {
        self.kind == DecisionKind::Update
    }
}

/// A read as the vote uses it, sanitised once at push time.
#[derive(Debug, Clone)]
struct Stored {
    index: usize,
    text: String,
    chars: Vec<char>,
    /// Per position: candidates `(char, prob)`, the read's own character first.
    cands: Vec<Vec<(char, f32)>>,
    /// Cluster weight: `confidence * quality * format_factor + EPS`.
    weight: f32,
    /// Position-vote weight: `quality * format_factor + EPS`.
    vote_weight: f32,
    quality: f32,
    confidence: f32,
    frame: u64,
    timestamp_ns: Option<u64>,
    region: Option<(String, f32)>,
}

/// 0..=1, NaN and infinities as 0.
fn unit(v: f32) -> f32 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The vote result before emission bookkeeping.
struct Outcome {
    text: String,
    confidence: f32,
    char_confidences: Vec<f32>,
    reads: usize,
    cluster_reads: usize,
    best: usize,
    region: Option<(String, f32)>,
    matches_format: Option<bool>,
}

/// Collects the reads of one track and decides its plate. Create one per track with
/// [`TrackVoter::new`], feed [`TrackVoter::push`] and call [`TrackVoter::finish`] when the track
/// ends; forward every `Some` they return.
#[derive(Debug, Clone)]
pub struct TrackVoter {
    cfg: VoterConfig,
    reads: Vec<Stored>,
    total: usize,
    last_emitted: Option<String>,
    finished: bool,
}

impl TrackVoter {
    /// A voter for one track. Out-of-range settings are clamped (see [`VoterConfig::validate`]).
    pub fn new(mut cfg: VoterConfig) -> Self {
        cfg.min_confidence = unit(cfg.min_confidence);
        cfg.max_reads = cfg.max_reads.max(1);
        if let EmitMode::Early { agree } = cfg.emit {
            cfg.emit = EmitMode::Early {
                agree: agree.max(1),
            };
        }
        TrackVoter {
            cfg,
            reads: Vec::new(),
            total: 0,
            last_emitted: None,
            finished: false,
        }
    }

    /// Reads pushed so far (all of them).
    pub fn total_reads(&self) -> usize {
        self.total
    }

    /// Text of the last decision handed out by `push`/`finish`.
    pub fn last_emitted(&self) -> Option<&str> {
        self.last_emitted.as_deref()
    }

    /// Marks `text` as already emitted for this track (it continues an event whose decision
    /// was handed out by another voter): the same decision is not emitted again, a different
    /// one comes out as an update.
    pub fn set_emitted(&mut self, text: &str) {
        self.last_emitted = Some(text.to_string());
    }

    /// Whether [`Self::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Adds a read. Returns a decision when the emit mode says one is due now:
    /// never for [`EmitMode::OnTrackEnd`]; for [`EmitMode::Early`] the first time `agree` reads
    /// agree and when a differently decided text reaches `agree` reads; for
    /// [`EmitMode::EveryRead`] after every read that leaves a decision passing the gates.
    /// Reads pushed after [`Self::finish`] are ignored.
    pub fn push(&mut self, read: VoteRead) -> Option<Decision> {
        if self.finished {
            return None;
        }
        let index = self.total;
        self.total += 1;
        self.store(read, index);
        match self.cfg.emit {
            EmitMode::OnTrackEnd => None,
            EmitMode::Early { agree } => {
                let o = self.outcome()?;
                if o.reads < agree || !self.passes(&o) {
                    return None;
                }
                if self.last_emitted.as_deref() == Some(o.text.as_str()) {
                    return None;
                }
                Some(self.emit(o, false))
            }
            EmitMode::EveryRead => {
                let o = self.outcome()?;
                self.passes(&o).then(|| self.emit(o, false))
            }
        }
    }

    /// Ends the track and returns its final decision, unless it fails the gates or is the same
    /// text as the last decision already emitted (so `Early`/`EveryRead` never emit a duplicate
    /// at track end, while a changed decision comes out as [`DecisionKind::Update`]). A final
    /// decision below the gates does not retract an earlier emitted one. Idempotent: a second
    /// call returns `None`.
    pub fn finish(&mut self) -> Option<Decision> {
        if self.finished {
            return None;
        }
        self.finished = true;
        let o = self.outcome()?;
        if !self.passes(&o) || self.last_emitted.as_deref() == Some(o.text.as_str()) {
            return None;
        }
        Some(self.emit(o, true))
    }

    /// The current decision without emitting it (e.g. for an on-screen overlay), ignoring the
    /// gates; `kind` says how it relates to the last emitted one.
    pub fn current(&self) -> Option<Decision> {
        let o = self.outcome()?;
        let kind = self.kind_for(&o.text);
        Some(self.make(o, kind, false))
    }

    fn passes(&self, o: &Outcome) -> bool {
        o.cluster_reads >= self.cfg.min_reads && o.confidence >= self.cfg.min_confidence
    }

    fn kind_for(&self, text: &str) -> DecisionKind {
        match self.last_emitted.as_deref() {
            None => DecisionKind::New,
            Some(t) if t == text => DecisionKind::Refresh,
            Some(_) => DecisionKind::Update,
        }
    }

    fn emit(&mut self, o: Outcome, at_track_end: bool) -> Decision {
        let kind = self.kind_for(&o.text);
        self.last_emitted = Some(o.text.clone());
        self.make(o, kind, at_track_end)
    }

    fn make(&self, o: Outcome, kind: DecisionKind, at_track_end: bool) -> Decision {
        let best = &self.reads[o.best];
        Decision {
            text: o.text,
            confidence: o.confidence,
            char_confidences: o.char_confidences,
            reads: o.reads,
            cluster_reads: o.cluster_reads,
            total_reads: self.total,
            best_read_index: best.index,
            best_frame: best.frame,
            best_timestamp_ns: best.timestamp_ns,
            region: o.region,
            matches_format: o.matches_format,
            kind,
            at_track_end,
        }
    }

    /// Sanitises and keeps a read (empty or format-dropped reads are only counted).
    fn store(&mut self, read: VoteRead, index: usize) {
        let chars: Vec<char> = read.text.chars().collect();
        if chars.is_empty() {
            return;
        }
        let factor = match &self.cfg.format {
            Some(f) if !f.is_match(&read.text) => match f.mode {
                FormatMode::Drop => return,
                FormatMode::Penalize(p) => unit(p),
            },
            _ => 1.0,
        };
        let confidence = unit(read.confidence);
        let quality = unit(read.quality);
        let alts = read
            .char_alternatives
            .filter(|a| a.len() == chars.len())
            .unwrap_or_default();
        let cands = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let p = read
                    .char_confidences
                    .get(i)
                    .copied()
                    .map_or(confidence, unit);
                let mut v = vec![(c, p)];
                for &(a, q) in alts.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                    if !v.iter().any(|&(x, _)| x == a) {
                        v.push((a, unit(q)));
                    }
                }
                v
            })
            .collect();
        self.reads.push(Stored {
            index,
            text: read.text,
            chars,
            cands,
            weight: confidence * quality * factor + WEIGHT_EPS,
            vote_weight: quality * factor + WEIGHT_EPS,
            quality,
            confidence,
            frame: read.frame,
            timestamp_ns: read.timestamp_ns,
            region: read
                .region
                .map(|(name, p)| (name, unit(p)))
                .filter(|(name, _)| !name.is_empty()),
        });
        if self.reads.len() > self.cfg.max_reads {
            // Evict the weakest read; on ties the oldest (first in the list).
            let weakest = self
                .reads
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.weight.total_cmp(&b.1.weight))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.reads.remove(weakest);
        }
    }

    /// Runs the vote over the kept reads (see the module docs).
    fn outcome(&self) -> Option<Outcome> {
        if self.reads.is_empty() {
            return None;
        }
        // 1-2: length clusters; the heaviest wins (ties: more reads, then longer text).
        let mut clusters: Vec<(usize, f32, Vec<usize>)> = Vec::new();
        for (i, r) in self.reads.iter().enumerate() {
            match clusters.iter_mut().find(|c| c.0 == r.chars.len()) {
                Some(c) => {
                    c.1 += r.weight;
                    c.2.push(i);
                }
                None => clusters.push((r.chars.len(), r.weight, vec![i])),
            }
        }
        let total_weight: f32 = clusters.iter().map(|c| c.1).sum();
        let (len, cluster_weight, members) = clusters.into_iter().max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(a.2.len().cmp(&b.2.len()))
                .then(a.0.cmp(&b.0))
        })?;
        let members: Vec<&Stored> = members.iter().map(|&i| &self.reads[i]).collect();
        let vote_total: f32 = members.iter().map(|r| r.vote_weight).sum();

        // 3: per-position vote; ties go to the character proposed first.
        let mut chars = Vec::with_capacity(len);
        let mut pos_scores: Vec<Vec<(char, f32)>> = Vec::with_capacity(len);
        for pos in 0..len {
            let mut scores: Vec<(char, f32)> = Vec::new();
            for r in &members {
                for &(c, p) in &r.cands[pos] {
                    match scores.iter_mut().find(|s| s.0 == c) {
                        Some(s) => s.1 += r.vote_weight * p,
                        None => scores.push((c, r.vote_weight * p)),
                    }
                }
            }
            let mut best = scores[0];
            for &s in &scores[1..] {
                if s.1 > best.1 {
                    best = s;
                }
            }
            chars.push(best.0);
            pos_scores.push(scores);
        }
        let mut text: String = chars.iter().collect();

        // A voted mix that breaks the format (possible with alternations such as
        // `LL999|999LL`) falls back to the matching read text that the position votes support
        // most, i.e. the one with the largest sum of its characters' scores.
        let mut matches_format = None;
        if let Some(fmt) = &self.cfg.format {
            let mut ok = fmt.is_match(&text);
            let support = |r: &Stored| -> f32 {
                r.chars
                    .iter()
                    .zip(&pos_scores)
                    .map(|(c, s)| s.iter().find(|x| x.0 == *c).map_or(0.0, |x| x.1))
                    .sum()
            };
            if !ok
                && let Some(r) = members
                    .iter()
                    .filter(|r| fmt.is_match(&r.text))
                    .max_by(|a, b| support(a).total_cmp(&support(b)))
            {
                text = r.text.clone();
                chars = r.chars.clone();
                ok = true;
            }
            matches_format = Some(ok);
        }

        // 4: confidences.
        let char_confidences: Vec<f32> = chars
            .iter()
            .enumerate()
            .map(|(pos, &c)| {
                let backing: f32 = members
                    .iter()
                    .map(|r| {
                        let p = r.cands[pos].iter().find(|x| x.0 == c).map_or(0.0, |x| x.1);
                        r.vote_weight * p
                    })
                    .sum();
                unit(backing / vote_total)
            })
            .collect();
        let cluster_share = cluster_weight / total_weight;
        let cluster_confidence = members
            .iter()
            .map(|r| r.vote_weight * r.confidence)
            .sum::<f32>()
            / vote_total;
        let min_char = char_confidences
            .iter()
            .copied()
            .fold(cluster_confidence, f32::min);
        let confidence = unit(cluster_share * min_char);

        // Support and best crop: highest-quality exact match, else the closest cluster read.
        let reads = members.iter().filter(|r| r.text == text).count();
        let mismatches = |r: &Stored| r.chars.iter().zip(&chars).filter(|(a, b)| a != b).count();
        let best = (0..self.reads.len())
            .filter(|&i| self.reads[i].chars.len() == len)
            .min_by(|&a, &b| {
                let (ra, rb) = (&self.reads[a], &self.reads[b]);
                mismatches(ra)
                    .cmp(&mismatches(rb))
                    .then(rb.quality.total_cmp(&ra.quality))
                    .then(rb.confidence.total_cmp(&ra.confidence))
                    .then(a.cmp(&b))
            })?;

        // Region: weighted majority among cluster reads that carry one.
        let mut region_scores: Vec<(&str, f32)> = Vec::new();
        let mut region_total = 0.0f32;
        for r in &members {
            if let Some((name, p)) = &r.region {
                region_total += r.weight;
                match region_scores.iter_mut().find(|s| s.0 == name) {
                    Some(s) => s.1 += r.weight * p,
                    None => region_scores.push((name, r.weight * p)),
                }
            }
        }
        let region = region_scores
            .iter()
            .copied()
            .reduce(|a, b| if b.1 > a.1 { b } else { a })
            .map(|(name, s)| (name.to_string(), unit(s / region_total)));

        Some(Outcome {
            text,
            confidence,
            char_confidences,
            reads,
            cluster_reads: members.len(),
            best,
            region,
            matches_format,
        })
    }
}

/// Maps the letter O (either case) to the digit 0, for evaluation against ground truth where the
/// two are indistinguishable on many plates (and often by law the same glyph).
pub fn normalize_o0(s: &str) -> String {
    s.chars()
        .map(|c| if c == 'O' || c == 'o' { '0' } else { c })
        .collect()
}

/// Maps each character to a representative of its usual OCR confusion group (0/O/D/Q -> 0,
/// 1/I/L -> 1, 2/Z -> 2, 5/S -> 5, 6/G -> 6, 8/B -> 8), upper-cased: two reads of one plate
/// that differ only by such confusions have the same key.
pub fn confusion_key(s: &str) -> String {
    s.chars()
        .map(|c| match c.to_ascii_uppercase() {
            'O' | 'D' | 'Q' => '0',
            'I' | 'L' => '1',
            'Z' => '2',
            'S' => '5',
            'G' => '6',
            'B' => '8',
            c => c,
        })
        .collect()
}

/// How two plate texts relate, for deciding whether two tracks saw the same plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateMatch {
    /// Equal up to the usual OCR confusions ([`confusion_key`]).
    Same,
    /// One character apart after [`confusion_key`], or one is a part (4 characters or more) of
    /// the other: a misread or a partly seen plate.
    Near,
    Different,
}

/// Compares two plate texts (see [`PlateMatch`]).
pub fn plate_match(a: &str, b: &str) -> PlateMatch {
    let (ka, kb) = (confusion_key(a), confusion_key(b));
    if ka.is_empty() || kb.is_empty() {
        return PlateMatch::Different;
    }
    if ka == kb {
        return PlateMatch::Same;
    }
    let (short, long) = if ka.len() <= kb.len() {
        (&ka, &kb)
    } else {
        (&kb, &ka)
    };
    if levenshtein(&ka, &kb) <= 1 || (short.chars().count() >= 4 && long.contains(short.as_str())) {
        PlateMatch::Near
    } else {
        PlateMatch::Different
    }
}

/// Levenshtein distance in characters (insertions, deletions and substitutions cost 1).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Character error rate: `levenshtein(pred, truth) / max(len(truth), 1)` (so an empty truth
/// counts each predicted character as one error). Can exceed 1 for long wrong predictions.
pub fn cer(pred: &str, truth: &str) -> f64 {
    levenshtein(pred, truth) as f64 / truth.chars().count().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, conf: f32, quality: f32) -> VoteRead {
        VoteRead {
            text: text.to_string(),
            confidence: conf,
            char_confidences: vec![conf; text.chars().count()],
            quality,
            ..Default::default()
        }
    }

    fn voter(cfg: VoterConfig) -> TrackVoter {
        cfg.validate().unwrap();
        TrackVoter::new(cfg)
    }

    fn decide(reads: Vec<VoteRead>, cfg: VoterConfig) -> Option<Decision> {
        let mut v = voter(cfg);
        for r in reads {
            assert!(v.push(r).is_none(), "OnTrackEnd must not emit early");
        }
        v.finish()
    }

    #[test]
    fn single_read_emits_at_track_end_with_its_confidence() {
        let mut r = read("AB123", 0.9, 0.7);
        r.char_confidences = vec![0.99, 0.95, 0.9, 0.97, 0.98];
        r.frame = 42;
        r.timestamp_ns = Some(1_000);
        let d = decide(vec![r], VoterConfig::default()).expect("one read is enough by default");
        assert_eq!(d.text, "AB123");
        assert_eq!((d.reads, d.cluster_reads, d.total_reads), (1, 1, 1));
        assert!((d.confidence - 0.9).abs() < 1e-4, "{}", d.confidence);
        assert!((d.char_confidences[0] - 0.99).abs() < 1e-4);
        assert_eq!(d.kind, DecisionKind::New);
        assert!(d.at_track_end);
        assert_eq!((d.best_read_index, d.best_frame), (0, 42));
        assert_eq!(d.best_timestamp_ns, Some(1_000));
        assert_eq!(d.matches_format, None);
    }

    #[test]
    fn read_confidence_caps_decision_confidence() {
        // Every character is sure but the read was unsure where the plate ends (a pad slot at
        // 0.6): the decision must not claim more than the read did.
        let mut r = read("AB123", 0.6, 0.9);
        r.char_confidences = vec![0.99; 5];
        let d = decide(vec![r], VoterConfig::default()).unwrap();
        assert!((d.confidence - 0.6).abs() < 1e-4, "{d:?}");
        assert!((d.char_confidences[0] - 0.99).abs() < 1e-4);
    }

    #[test]
    fn majority_beats_one_wrong_read() {
        let d = decide(
            vec![
                read("AB123", 0.9, 0.8),
                read("A8123", 0.9, 0.8),
                read("AB123", 0.9, 0.8),
                read("AB123", 0.9, 0.8),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!((d.reads, d.cluster_reads, d.total_reads), (3, 4, 4));
        // position 1: three of four equal-weight reads back 'B' at 0.9 -> 0.675
        assert!((d.char_confidences[1] - 0.675).abs() < 1e-3, "{:?}", d);
        assert!((d.char_confidences[0] - 0.9).abs() < 1e-3);
        assert!((d.confidence - 0.675).abs() < 1e-3);
        assert_ne!(d.best_read_index, 1, "the wrong read is not the best crop");
    }

    #[test]
    fn per_position_vote_fixes_different_characters() {
        // Every read has one error, at a different place: no read is right, the vote is.
        let d = decide(
            vec![
                read("XB123", 0.8, 0.8),
                read("AX123", 0.8, 0.8),
                read("AB1X3", 0.8, 0.8),
                read("AB12X", 0.8, 0.8),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!(d.reads, 0);
        assert_eq!(d.cluster_reads, 4);
        // best crop: a read one character away (all are), highest quality, earliest
        assert_eq!(d.best_read_index, 0);
    }

    #[test]
    fn confidence_and_quality_beat_count() {
        // Three poor reads say '3', one good read says '8'.
        let d = decide(
            vec![
                read("AB123", 0.4, 0.1),
                read("AB123", 0.4, 0.1),
                read("AB128", 0.95, 0.95),
                read("AB123", 0.4, 0.1),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB128");
        assert_eq!(d.reads, 1);
        assert_eq!(d.best_read_index, 2);
        // The same reads with equal quality/confidence go the other way.
        let d = decide(
            vec![
                read("AB123", 0.9, 0.9),
                read("AB123", 0.9, 0.9),
                read("AB128", 0.9, 0.9),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB123");
    }

    #[test]
    fn char_confidence_weights_each_position() {
        // Two reads unsure only about the last character ('3' at 0.3) lose that position to one
        // read sure about it ('8' at 0.9), while all three back the other positions fully.
        let unsure = |text: &str| {
            let mut r = read(text, 0.3, 1.0);
            r.char_confidences = vec![0.95, 0.95, 0.95, 0.95, 0.3];
            r
        };
        let mut sure = read("AB128", 0.9, 1.0);
        sure.char_confidences = vec![0.95, 0.95, 0.95, 0.95, 0.9];
        let d = decide(
            vec![unsure("AB123"), sure, unsure("AB123")],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB128");
        assert!((d.char_confidences[0] - 0.95).abs() < 1e-3, "{d:?}");
        assert!((d.char_confidences[4] - 0.3).abs() < 1e-3, "{d:?}");
    }

    #[test]
    fn soft_alternatives_can_win_a_position() {
        // Both reads put '8' second behind different wrong characters at position 4.
        let mk = |text: &str, wrong: char| {
            let mut r = read(text, 0.45, 0.9);
            r.char_confidences = vec![0.9, 0.9, 0.9, 0.9, 0.45];
            r.char_alternatives = Some(
                (0..5)
                    .map(|i| {
                        if i == 4 {
                            vec![(wrong, 0.45), ('8', 0.44), ('Q', 0.11)]
                        } else {
                            vec![(text.chars().nth(i).unwrap(), 0.9)]
                        }
                    })
                    .collect(),
            );
            r
        };
        let d = decide(
            vec![mk("AB12B", 'B'), mk("AB123", '3')],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB128");
        assert_eq!(d.reads, 0);
        assert!((d.char_confidences[4] - 0.44).abs() < 1e-3, "{d:?}");
        // Mismatched alternative lists are ignored rather than misaligned.
        let mut bad = mk("AB12B", 'B');
        bad.char_alternatives.as_mut().unwrap().pop();
        let d = decide(vec![bad], VoterConfig::default()).unwrap();
        assert_eq!(d.text, "AB12B");
    }

    #[test]
    fn length_outliers_form_their_own_cluster() {
        let d = decide(
            vec![
                read("AB1234", 0.9, 0.8),
                read("AB123", 0.95, 0.9),
                read("AB1234", 0.9, 0.8),
                read("B1234", 0.6, 0.5),
                read("AB1234", 0.85, 0.8),
                read("AB12345", 0.7, 0.6),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB1234");
        assert_eq!((d.reads, d.cluster_reads, d.total_reads), (3, 3, 6));
        // confidence is reduced by the weight that went to the other lengths
        let w = |c: f32, q: f32| c * q;
        let share = (w(0.9, 0.8) * 2.0 + w(0.85, 0.8))
            / (w(0.9, 0.8) * 2.0 + w(0.85, 0.8) + w(0.95, 0.9) + w(0.6, 0.5) + w(0.7, 0.6));
        let min_char = (0.8 * 0.9 * 2.0 + 0.8 * 0.85) / (0.8 * 3.0);
        assert!((d.confidence - share * min_char).abs() < 1e-3, "{d:?}");
        // A heavy short cluster wins over many weak long reads.
        let d = decide(
            vec![
                read("AB12", 0.2, 0.2),
                read("AB12", 0.2, 0.2),
                read("AB1", 0.95, 0.95),
            ],
            VoterConfig::default(),
        )
        .unwrap();
        assert_eq!(d.text, "AB1");
    }

    #[test]
    fn empty_and_nan_reads_are_safe() {
        let mut nan = read("AB1", f32::NAN, f32::NAN);
        nan.char_confidences = vec![f32::NAN, 0.5];
        nan.region = Some(("France".into(), f32::NAN));
        let d = decide(vec![read("", 0.9, 0.9), nan], VoterConfig::default()).unwrap();
        assert_eq!(d.text, "AB1");
        assert_eq!(d.total_reads, 2);
        assert!(d.confidence.is_finite() && d.confidence == 0.0);
        assert!(d.char_confidences.iter().all(|c| c.is_finite()));
        assert_eq!(d.region, Some(("France".into(), 0.0)));
        // Only empty reads: nothing to decide.
        assert!(decide(vec![read("", 0.9, 0.9)], VoterConfig::default()).is_none());
        assert!(decide(vec![], VoterConfig::default()).is_none());
    }

    #[test]
    fn min_reads_gate() {
        let cfg = VoterConfig {
            min_reads: 2,
            ..Default::default()
        };
        assert!(decide(vec![read("AB123", 0.99, 1.0)], cfg.clone()).is_none());
        let d = decide(
            vec![read("AB123", 0.99, 1.0), read("AB128", 0.5, 0.5)],
            cfg.clone(),
        )
        .unwrap();
        assert_eq!(d.text, "AB123");
        // Two reads of different lengths: the winning cluster has only one.
        assert!(decide(vec![read("AB123", 0.99, 1.0), read("AB12", 0.5, 0.5)], cfg).is_none());
    }

    #[test]
    fn min_confidence_gate() {
        let cfg = VoterConfig {
            min_confidence: 0.6,
            ..Default::default()
        };
        assert!(decide(vec![read("AB123", 0.5, 1.0)], cfg.clone()).is_none());
        assert!(decide(vec![read("AB123", 0.7, 1.0)], cfg.clone()).is_some());
        // Disagreement lowers the decision confidence below the gate.
        assert!(decide(vec![read("AB123", 0.9, 1.0), read("XY123", 0.9, 1.0)], cfg).is_none());
    }

    #[test]
    fn regex_penalize_and_drop() {
        let pat = "[A-Z]{2}[0-9]{3}";
        // Penalize: two non-matching reads lose to one matching read.
        let cfg = VoterConfig {
            format: Some(PlateFormat::new(pat, FormatMode::default()).unwrap()),
            ..Default::default()
        };
        let reads = vec![
            read("A8123", 0.9, 0.9),
            read("A8123", 0.9, 0.9),
            read("AB123", 0.8, 0.8),
        ];
        let d = decide(reads.clone(), cfg.clone()).unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!(d.matches_format, Some(true));
        // Penalize: only non-matching reads still give the best guess, flagged.
        let d = decide(vec![read("A8123", 0.9, 0.9)], cfg).unwrap();
        assert_eq!(d.text, "A8123");
        assert_eq!(d.matches_format, Some(false));
        // Drop: non-matching reads are ignored but counted.
        let cfg = VoterConfig {
            format: Some(PlateFormat::new(pat, FormatMode::Drop).unwrap()),
            ..Default::default()
        };
        let d = decide(reads, cfg.clone()).unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!((d.reads, d.cluster_reads, d.total_reads), (1, 1, 3));
        assert_eq!(d.best_read_index, 2);
        assert!((d.confidence - 0.8).abs() < 1e-3);
        assert!(decide(vec![read("A8123", 0.9, 0.9)], cfg).is_none());
        // Anchoring: a longer text containing a match does not match.
        let f = PlateFormat::new(pat, FormatMode::Drop).unwrap();
        assert!(f.is_match("AB123") && !f.is_match("XAB123") && !f.is_match("AB1234"));
        assert_eq!(f.pattern(), pat);
        // Alternation is anchored as a whole.
        let f = PlateFormat::new("[A-Z]{2}|[0-9]{2}", FormatMode::Drop).unwrap();
        assert!(f.is_match("12") && !f.is_match("AB12"));
    }

    #[test]
    fn regex_vote_mix_falls_back_to_matching_read() {
        // Two formats: LL999 or 999LL. A per-position mix "AB1CD"-like text matches neither.
        let cfg = VoterConfig {
            format: Some(
                PlateFormat::new("[A-Z]{2}[0-9]{3}|[0-9]{3}[A-Z]{2}", FormatMode::Drop).unwrap(),
            ),
            ..Default::default()
        };
        let d = decide(
            vec![
                read("AB123", 0.9, 0.9),
                read("123CD", 0.8, 0.8),
                read("12345", 0.1, 0.1), // dropped
                read("AB3CD", 0.1, 0.1), // dropped
                read("193CD", 0.85, 0.85),
            ],
            cfg,
        )
        .unwrap();
        // The mix "1B3CD" matches neither; "193CD" has the most position support (it shares
        // 1, 3, C, D with "123CD"), more than the single heaviest read "AB123".
        assert_eq!(d.matches_format, Some(true));
        assert_eq!(d.text, "193CD");
        assert_eq!(d.reads, 1);
        assert!(PlateFormat::new("[A-Z", FormatMode::Drop).is_err());
        assert!(PlateFormat::new("A", FormatMode::Penalize(1.5)).is_err());
    }

    #[test]
    fn early_emit_then_update_then_no_duplicate() {
        let cfg = VoterConfig {
            emit: EmitMode::Early { agree: 2 },
            ..Default::default()
        };
        let mut v = voter(cfg);
        assert!(
            v.push(read("AB123", 0.8, 0.6)).is_none(),
            "one read is not agreement"
        );
        let d = v.push(read("AB123", 0.8, 0.6)).expect("two agree");
        assert_eq!(
            (d.text.as_str(), d.kind, d.at_track_end),
            ("AB123", DecisionKind::New, false)
        );
        assert!(
            v.push(read("AB123", 0.8, 0.6)).is_none(),
            "unchanged: no repeat"
        );
        // Better reads say '8'; once two of them agree the decision changes -> update.
        assert!(v.push(read("AB128", 0.99, 0.99)).is_none());
        let u = v.push(read("AB128", 0.99, 0.99)).expect("update");
        assert_eq!(u.text, "AB128");
        assert!(u.is_update());
        assert_eq!(v.last_emitted(), Some("AB128"));
        // Track ends with the same decision: nothing new.
        assert!(v.finish().is_none());
        assert!(v.finish().is_none(), "finish is idempotent");
        assert!(
            v.push(read("ZZ999", 1.0, 1.0)).is_none(),
            "ignored after finish"
        );
        assert!(v.is_finished());
    }

    #[test]
    fn early_emit_changed_at_finish_is_an_update() {
        let mut v = voter(VoterConfig {
            emit: EmitMode::Early { agree: 2 },
            ..Default::default()
        });
        assert!(v.push(read("AB123", 0.7, 0.5)).is_none());
        assert_eq!(v.push(read("AB123", 0.7, 0.5)).unwrap().text, "AB123");
        // One strong read flips position 4, but it is not backed by two exact reads yet.
        assert!(v.push(read("AB128", 0.99, 1.0)).is_none());
        assert_eq!(v.current().unwrap().text, "AB128");
        assert_eq!(v.current().unwrap().kind, DecisionKind::Update);
        let f = v.finish().expect("changed decision comes out at the end");
        assert_eq!(f.text, "AB128");
        assert!(f.is_update() && f.at_track_end);
        assert_eq!(f.total_reads, 3);
    }

    #[test]
    fn early_never_reached_still_emits_at_finish() {
        let mut v = voter(VoterConfig {
            emit: EmitMode::Early { agree: 3 },
            ..Default::default()
        });
        assert!(v.push(read("AB123", 0.9, 0.9)).is_none());
        let d = v.finish().expect("single still-image read");
        assert_eq!((d.kind, d.at_track_end), (DecisionKind::New, true));
    }

    #[test]
    fn early_respects_gates() {
        let mut v = voter(VoterConfig {
            emit: EmitMode::Early { agree: 1 },
            min_confidence: 0.8,
            ..Default::default()
        });
        assert!(
            v.push(read("AB123", 0.5, 0.9)).is_none(),
            "below min_confidence"
        );
        assert!(v.finish().is_none());
    }

    #[test]
    fn every_read_mode() {
        let mut v = voter(VoterConfig {
            emit: EmitMode::EveryRead,
            ..Default::default()
        });
        assert_eq!(
            v.push(read("AB123", 0.9, 0.9)).unwrap().kind,
            DecisionKind::New
        );
        assert!(
            v.push(read("", 0.9, 0.9))
                .is_some_and(|d| d.kind == DecisionKind::Refresh)
        );
        let d = v.push(read("AB128", 0.99, 1.0)).unwrap();
        assert_eq!((d.text.as_str(), d.kind), ("AB128", DecisionKind::Update));
        assert!(v.finish().is_none(), "same as last emitted");
    }

    #[test]
    fn best_read_prefers_quality_among_exact_matches() {
        let mut reads = vec![
            read("AB123", 0.9, 0.5),
            read("AB123", 0.8, 0.95),
            read("AB128", 0.6, 1.0),
            read("AB123", 0.9, 0.7),
        ];
        for (i, r) in reads.iter_mut().enumerate() {
            r.frame = 100 + i as u64;
        }
        let d = decide(reads, VoterConfig::default()).unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!((d.best_read_index, d.best_frame), (1, 101));
    }

    #[test]
    fn region_majority() {
        let mk = |region: &str, p: f32| VoteRead {
            region: Some((region.to_string(), p)),
            ..read("AB123", 0.9, 0.9)
        };
        let d = decide(
            vec![mk("France", 0.9), mk("Belgium", 0.6), mk("France", 0.8)],
            VoterConfig::default(),
        )
        .unwrap();
        let (name, share) = d.region.unwrap();
        assert_eq!(name, "France");
        assert!((share - 1.7 / 3.0).abs() < 1e-3, "{share}");
    }

    #[test]
    fn max_reads_evicts_weakest_and_keeps_indices() {
        let mut v = voter(VoterConfig {
            max_reads: 3,
            ..Default::default()
        });
        v.push(read("ZZ999", 0.1, 0.1));
        for _ in 0..3 {
            v.push(read("AB123", 0.9, 0.9));
        }
        v.push(read("AB123", 0.95, 1.0));
        let d = v.finish().unwrap();
        assert_eq!(d.text, "AB123");
        assert_eq!(d.total_reads, 5);
        assert_eq!(d.cluster_reads, 3);
        assert_eq!(d.best_read_index, 4);
        assert!((d.confidence - 0.9).abs() < 0.05, "ZZ999 evicted: {d:?}");
    }

    #[test]
    fn config_validation() {
        assert!(VoterConfig::default().validate().is_ok());
        let bad = [
            VoterConfig {
                min_confidence: 1.5,
                ..Default::default()
            },
            VoterConfig {
                min_confidence: f32::NAN,
                ..Default::default()
            },
            VoterConfig {
                max_reads: 0,
                ..Default::default()
            },
            VoterConfig {
                emit: EmitMode::Early { agree: 0 },
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
            // ...but a voter built from it still works (values clamped).
            let mut v = TrackVoter::new(c);
            v.push(read("AB1", 0.9, 0.9));
            v.finish();
        }
    }

    #[test]
    fn o0_normalisation_and_cer() {
        assert_eq!(normalize_o0("OO0o-Q"), "0000-Q");
        assert_eq!(normalize_o0(""), "");
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ABC"), 3);
        assert_eq!(levenshtein("ÄB", "AB"), 1);
        assert_eq!(cer("AB123", "AB123"), 0.0);
        assert!((cer("AB128", "AB123") - 0.2).abs() < 1e-12);
        assert!((cer("AB12", "AB123") - 0.2).abs() < 1e-12);
        assert!((cer("XAB1234", "AB123") - 0.4).abs() < 1e-12);
        assert_eq!(cer("", ""), 0.0);
        assert_eq!(cer("AB", ""), 2.0);
        assert_eq!(cer(&normalize_o0("AO123"), &normalize_o0("A0123")), 0.0);
    }

    #[test]
    fn plate_match_forgives_ocr_confusions_and_parts() {
        assert_eq!(confusion_key("rk3O0ag"), "RK300A6");
        assert_eq!(plate_match("RK300AG", "RK3O0A6"), PlateMatch::Same);
        assert_eq!(plate_match("8DZ5IL", "BQ2S1L"), PlateMatch::Same);
        assert_eq!(plate_match("RK300AG", "RK300AH"), PlateMatch::Near);
        assert_eq!(plate_match("605AB", "RK605AB"), PlateMatch::Near);
        assert_eq!(plate_match("RK855AP", "RK875AE"), PlateMatch::Different);
        assert_eq!(
            plate_match("05A", "RK605AB"),
            PlateMatch::Different,
            "too short a part"
        );
        assert_eq!(plate_match("", ""), PlateMatch::Different);
    }

    #[test]
    fn a_voter_continuing_an_event_does_not_emit_it_again() {
        let mut v = TrackVoter::new(VoterConfig::default());
        v.set_emitted("AB123");
        v.push(read("AB123", 0.9, 0.8));
        assert!(v.finish().is_none(), "same text as already emitted");
        let mut v = TrackVoter::new(VoterConfig::default());
        v.set_emitted("AB123");
        v.push(read("AB128", 0.9, 0.8));
        assert!(v.finish().unwrap().is_update());
    }
}
