// SPDX-License-Identifier: MIT OR Apache-2.0
//! Rectangular linear assignment with a cost limit, for the tracker's association steps.
//!
//! ByteTrack's reference implementation calls `lap.lapjv(cost, extend_cost=True,
//! cost_limit=limit)`. `lap` pads the `R x C` matrix to `(R+C) x (R+C)`: every real row gets
//! dummy columns and every real column gets dummy rows at cost `limit / 2`, and dummy/dummy
//! cells cost 0. Leaving a row *and* a column unmatched therefore costs `limit`, so the optimum
//! of the padded problem is exactly the partial matching that minimises
//! `sum over matched pairs of (cost - limit)`, and a pair whose cost exceeds `limit` is never
//! worth taking. We solve that same objective directly instead of building the padded matrix:
//!
//! * only entries with `cost <= limit` become edges (with weight `cost - limit <= 0`), and
//! * every row `i` gets one private dummy column of weight 0 ("stay unmatched").
//!
//! That is an `R x (C + R)` rectangular problem that always has a feasible full row
//! assignment. It is solved with the shortest augmenting path method of Jonker-Volgenant as
//! formulated by Crouse (2016, "On implementing 2D rectangular assignment algorithms", the
//! algorithm behind scipy's `linear_sum_assignment`), with Dijkstra run over the *sparse* edge
//! lists: columns that no visited row can reach are never touched, so the typical tracking
//! problem (each track overlaps one or two detections) costs close to `O(R*C)` for building
//! the edge lists plus a few operations per row, instead of `O(R*(R+C))` per augmentation.
//!
//! Ties between equally good matchings may be broken differently from `lap`; the optimum value
//! is the same.

/// Marks "no row/column" in the index vectors.
const NONE: usize = usize::MAX;

/// Reusable solver; keeping one around avoids reallocating its work buffers every frame.
#[derive(Debug, Default, Clone)]
pub struct LinearAssignment {
    /// Compressed sparse rows of the allowed edges (`cost <= limit`) plus each row's dummy.
    row_start: Vec<usize>,
    adj_col: Vec<usize>,
    adj_cost: Vec<f64>,
    /// Dual potentials of rows and columns.
    u: Vec<f64>,
    v: Vec<f64>,
    /// Tentative shortest path length per column (`INFINITY` = not reached yet).
    spc: Vec<f64>,
    /// Row from which each reached column was last relaxed.
    path: Vec<usize>,
    col4row: Vec<usize>,
    row4col: Vec<usize>,
    /// Whether a column's shortest path is final in the current Dijkstra run.
    in_sc: Vec<bool>,
    /// Rows visited, columns finalised and columns reached-but-not-final in the current run.
    sr: Vec<usize>,
    sc: Vec<usize>,
    todo: Vec<usize>,
    matches: Vec<(usize, usize)>,
}

impl LinearAssignment {
    /// Solves the thresholded assignment on a row-major `rows x cols` matrix.
    ///
    /// Returns the matched `(row, col)` pairs, sorted by row. The matching minimises
    /// `sum(cost - limit)` over matched pairs; a pair with `cost > limit` is never matched and
    /// non-finite entries (NaN, infinities) are treated as "never match". A non-finite `limit`
    /// yields no matches.
    ///
    /// # Panics
    /// If `cost.len() != rows * cols` (a caller bug, not a data problem).
    pub fn solve(
        &mut self,
        cost: &[f64],
        rows: usize,
        cols: usize,
        limit: f64,
    ) -> &[(usize, usize)] {
        assert_eq!(
            cost.len(),
            rows * cols,
            "cost matrix must hold rows * cols entries"
        );
        self.matches.clear();
        if rows == 0 || cols == 0 || !limit.is_finite() {
            return &self.matches;
        }
        self.build_edges(cost, rows, cols, limit);

        let n = cols + rows;
        reset(&mut self.u, rows, 0.0);
        reset(&mut self.v, n, 0.0);
        reset(&mut self.spc, n, f64::INFINITY);
        reset(&mut self.path, n, NONE);
        reset(&mut self.col4row, rows, NONE);
        reset(&mut self.row4col, n, NONE);
        reset(&mut self.in_sc, n, false);

        for cur in 0..rows {
            if let Some((sink, min_val)) = self.shortest_augmenting_path(cur) {
                self.update_duals(cur, min_val);
                self.augment(cur, sink);
            }
            // Only the entries touched by this run need resetting.
            for &j in &self.todo {
                self.spc[j] = f64::INFINITY;
            }
            for &j in &self.sc {
                self.spc[j] = f64::INFINITY;
                self.in_sc[j] = false;
            }
        }

        self.matches.extend(
            self.col4row
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c < cols)
                .map(|(r, &c)| (r, c)),
        );
        &self.matches
    }

    fn build_edges(&mut self, cost: &[f64], rows: usize, cols: usize, limit: f64) {
        self.row_start.clear();
        self.adj_col.clear();
        self.adj_cost.clear();
        for (r, row) in cost.chunks_exact(cols).enumerate() {
            self.row_start.push(self.adj_col.len());
            for (c, &x) in row.iter().enumerate() {
                let reduced = x - limit;
                // `x <= limit` is false for NaN; the finiteness checks reject infinities and
                // overflow of the subtraction.
                if x.is_finite() && x <= limit && reduced.is_finite() {
                    self.adj_col.push(c);
                    self.adj_cost.push(reduced);
                }
            }
            self.adj_col.push(cols + r);
            self.adj_cost.push(0.0);
        }
        self.row_start.push(self.adj_col.len());
        debug_assert_eq!(self.row_start.len(), rows + 1);
    }

    /// Dijkstra from the free row `cur` to the nearest free column over reduced costs.
    ///
    /// Returns the sink column and the path length, or `None` if no free column is reachable
    /// (cannot happen while every row has its dummy column, kept for robustness).
    fn shortest_augmenting_path(&mut self, cur: usize) -> Option<(usize, f64)> {
        self.sr.clear();
        self.sc.clear();
        self.todo.clear();
        let mut min_val = 0.0;
        let mut i = cur;
        loop {
            self.sr.push(i);
            let ui = self.u[i];
            for k in self.row_start[i]..self.row_start[i + 1] {
                let j = self.adj_col[k];
                if self.in_sc[j] {
                    continue;
                }
                let r = min_val + self.adj_cost[k] - ui - self.v[j];
                if r < self.spc[j] {
                    if self.spc[j] == f64::INFINITY {
                        self.todo.push(j);
                    }
                    self.spc[j] = r;
                    self.path[j] = i;
                }
            }
            // Closest reached column; among equals prefer a free one (ends the search early).
            let mut best = None;
            let mut lowest = f64::INFINITY;
            for (t, &j) in self.todo.iter().enumerate() {
                let d = self.spc[j];
                if d < lowest || (d == lowest && self.row4col[j] == NONE) {
                    lowest = d;
                    best = Some(t);
                }
            }
            let j = self.todo.swap_remove(best?);
            self.in_sc[j] = true;
            self.sc.push(j);
            min_val = lowest;
            match self.row4col[j] {
                NONE => return Some((j, min_val)),
                next => i = next,
            }
        }
    }

    fn update_duals(&mut self, cur: usize, min_val: f64) {
        self.u[cur] += min_val;
        for &i in &self.sr {
            if i != cur {
                self.u[i] += min_val - self.spc[self.col4row[i]];
            }
        }
        for &j in &self.sc {
            self.v[j] -= min_val - self.spc[j];
        }
    }

    fn augment(&mut self, cur: usize, sink: usize) {
        let mut j = sink;
        loop {
            let i = self.path[j];
            self.row4col[j] = i;
            std::mem::swap(&mut self.col4row[i], &mut j);
            if i == cur {
                break;
            }
        }
    }
}

fn reset<T: Clone>(v: &mut Vec<T>, len: usize, value: T) {
    v.clear();
    v.resize(len, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: deterministic test data without the `rand` crate.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    /// Best value of `sum(cost - limit)` over all partial matchings using allowed pairs only.
    fn brute_force(cost: &[f64], rows: usize, cols: usize, limit: f64) -> f64 {
        fn rec(
            cost: &[f64],
            rows: usize,
            cols: usize,
            limit: f64,
            r: usize,
            used: &mut [bool],
        ) -> f64 {
            if r == rows {
                return 0.0;
            }
            // Row r unmatched.
            let mut best = rec(cost, rows, cols, limit, r + 1, used);
            for c in 0..cols {
                let x = cost[r * cols + c];
                if !used[c] && x.is_finite() && x <= limit {
                    used[c] = true;
                    let v = (x - limit) + rec(cost, rows, cols, limit, r + 1, used);
                    used[c] = false;
                    best = best.min(v);
                }
            }
            best
        }
        rec(cost, rows, cols, limit, 0, &mut vec![false; cols])
    }

    fn check_valid(
        m: &[(usize, usize)],
        cost: &[f64],
        rows: usize,
        cols: usize,
        limit: f64,
    ) -> f64 {
        let mut row_seen = vec![false; rows];
        let mut col_seen = vec![false; cols];
        let mut value = 0.0;
        for w in m.windows(2) {
            assert!(w[0].0 < w[1].0, "matches must be sorted by row: {m:?}");
        }
        for &(r, c) in m {
            assert!(r < rows && c < cols);
            assert!(
                !row_seen[r] && !col_seen[c],
                "row or column matched twice: {m:?}"
            );
            row_seen[r] = true;
            col_seen[c] = true;
            let x = cost[r * cols + c];
            assert!(
                x.is_finite() && x <= limit,
                "matched a forbidden pair ({r},{c}) cost {x}"
            );
            value += x - limit;
        }
        value
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = Rng(7);
        let mut lap = LinearAssignment::default();
        for case in 0..4000 {
            let rows = rng.below(6) as usize;
            let cols = rng.below(6) as usize;
            let integer = case % 3 == 0; // small integers produce many ties
            let cost: Vec<f64> = (0..rows * cols)
                .map(|_| match rng.below(40) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    _ if integer => rng.below(5) as f64 - 1.0,
                    _ => rng.unit() * 2.0 - 0.5,
                })
                .collect();
            let limit = if integer { 2.0 } else { rng.unit() * 1.5 };
            let m = lap.solve(&cost, rows, cols, limit).to_vec();
            let got = check_valid(&m, &cost, rows, cols, limit);
            let want = brute_force(&cost, rows, cols, limit);
            assert!(
                (got - want).abs() < 1e-9,
                "case {case}: {rows}x{cols} limit {limit} cost {cost:?}: got {got} want {want} ({m:?})"
            );
        }
    }

    #[test]
    fn never_matches_above_limit_even_if_that_leaves_everything_unmatched() {
        let mut lap = LinearAssignment::default();
        let cost = [0.9, 0.95, 0.81, 0.99];
        assert!(lap.solve(&cost, 2, 2, 0.8).is_empty());
        // Exactly one allowed pair.
        let cost = [0.9, 0.95, 0.79, 0.99];
        assert_eq!(lap.solve(&cost, 2, 2, 0.8), &[(1, 0)]);
    }

    #[test]
    fn prefers_total_over_greedy() {
        // Greedy would take (0,0)=0.1 and leave row 1 with only 0.9 (> limit): one match.
        // The optimum takes two matches (0,1) and (1,0): (0.3-0.8)+(0.3-0.8) < (0.1-0.8).
        let mut lap = LinearAssignment::default();
        let cost = [0.1, 0.3, 0.3, 0.9];
        assert_eq!(lap.solve(&cost, 2, 2, 0.8), &[(0, 1), (1, 0)]);
    }

    #[test]
    fn rectangular_and_empty() {
        let mut lap = LinearAssignment::default();
        assert!(lap.solve(&[], 0, 5, 0.5).is_empty());
        assert!(lap.solve(&[], 3, 0, 0.5).is_empty());
        // Tall: 3 rows, 1 column; best row wins.
        assert_eq!(lap.solve(&[0.4, 0.1, 0.3], 3, 1, 0.5), &[(1, 0)]);
        // Wide: 1 row, 3 columns.
        assert_eq!(lap.solve(&[0.4, 0.1, 0.3], 1, 3, 0.5), &[(0, 1)]);
        // Non-finite limit: nothing may match.
        assert!(lap.solve(&[0.0], 1, 1, f64::NAN).is_empty());
    }

    #[test]
    fn reuse_does_not_leak_state_between_calls() {
        let mut lap = LinearAssignment::default();
        let a = lap.solve(&[0.1, 0.2, 0.2, 0.1], 2, 2, 1.0).to_vec();
        let _ = lap.solve(&[0.5; 12], 3, 4, 1.0);
        let b = lap.solve(&[0.1, 0.2, 0.2, 0.1], 2, 2, 1.0).to_vec();
        assert_eq!(a, b);
        assert_eq!(a, vec![(0, 0), (1, 1)]);
    }
}
