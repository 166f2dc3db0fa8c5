//! A text diff, used to restore a version as an ordinary edit: the changed lines are
//! found with Myers' O(ND) algorithm, then each changed block is refined to characters,
//! so that text nobody touched keeps its identity (and other people's cursors stay put).
//! When the texts are too different for the bounded search, the changed middle is
//! replaced as one block, which is still correct, only coarser.

/// Replace `delete` characters at `pos` (a char index into the old text) with `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub pos: usize,
    pub delete: usize,
    pub insert: String,
}

/// The most line edits searched for before falling back to a block replace.
const MAX_LINE_EDITS: usize = 1_000;
/// The most character edits searched for inside one changed block.
const MAX_CHAR_EDITS: usize = 200;

/// Edits (ascending, non-overlapping, positions in the old text) that turn `old` into `new`.
pub fn diff(old: &str, new: &str) -> Vec<Edit> {
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    let prefix = common_prefix(&a, &b);
    let suffix = common_suffix(&a[prefix..], &b[prefix..]);
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    if a_mid.is_empty() && b_mid.is_empty() {
        return Vec::new();
    }
    let a_lines = lines(a_mid);
    let b_lines = lines(b_mid);
    let a_tokens: Vec<&[char]> = a_lines.iter().map(|r| &a_mid[r.clone()]).collect();
    let b_tokens: Vec<&[char]> = b_lines.iter().map(|r| &b_mid[r.clone()]).collect();
    let mut out = Vec::new();
    match myers(&a_tokens, &b_tokens, MAX_LINE_EDITS) {
        Some(ops) => {
            // Group consecutive non-equal line ops into blocks, refine each by chars.
            let (mut i, mut j) = (0usize, 0usize);
            let mut block: Option<(usize, usize, usize, usize)> = None;
            let flush = |block: &mut Option<(usize, usize, usize, usize)>, out: &mut Vec<Edit>| {
                if let Some((ai, aj, bi, bj)) = block.take() {
                    let a_start = a_lines.get(ai).map_or(a_mid.len(), |r| r.start);
                    let a_end = if aj == 0 {
                        a_start
                    } else {
                        a_lines[aj - 1].end
                    };
                    let b_start = b_lines.get(bi).map_or(b_mid.len(), |r| r.start);
                    let b_end = if bj == 0 {
                        b_start
                    } else {
                        b_lines[bj - 1].end
                    };
                    let a_end = a_end.max(a_start);
                    let b_end = b_end.max(b_start);
                    refine(
                        &a_mid[a_start..a_end],
                        &b_mid[b_start..b_end],
                        prefix + a_start,
                        out,
                    );
                }
            };
            for op in ops {
                match op {
                    Op::Equal(n) => {
                        flush(&mut block, &mut out);
                        i += n;
                        j += n;
                    }
                    Op::Delete(n) => {
                        let e = block.get_or_insert((i, i, j, j));
                        i += n;
                        e.1 = i;
                    }
                    Op::Insert(n) => {
                        let e = block.get_or_insert((i, i, j, j));
                        j += n;
                        e.3 = j;
                    }
                }
            }
            flush(&mut block, &mut out);
        }
        None => out.push(Edit {
            pos: prefix,
            delete: a_mid.len(),
            insert: b_mid.iter().collect(),
        }),
    }
    out
}

/// Character-level edits for one changed block starting at `base` in the old text.
fn refine(a: &[char], b: &[char], base: usize, out: &mut Vec<Edit>) {
    let prefix = common_prefix(a, b);
    let suffix = common_suffix(&a[prefix..], &b[prefix..]);
    let (a, b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let base = base + prefix;
    if a.is_empty() && b.is_empty() {
        return;
    }
    let ops = if a.is_empty() || b.is_empty() {
        None
    } else {
        myers(a, b, MAX_CHAR_EDITS)
    };
    let Some(ops) = ops else {
        out.push(Edit {
            pos: base,
            delete: a.len(),
            insert: b.iter().collect(),
        });
        return;
    };
    let (mut i, mut j) = (0usize, 0usize);
    let mut pending: Option<Edit> = None;
    for op in ops {
        match op {
            Op::Equal(n) => {
                out.extend(pending.take());
                i += n;
                j += n;
            }
            Op::Delete(n) => {
                pending
                    .get_or_insert(Edit {
                        pos: base + i,
                        delete: 0,
                        insert: String::new(),
                    })
                    .delete += n;
                i += n;
            }
            Op::Insert(n) => {
                pending
                    .get_or_insert(Edit {
                        pos: base + i,
                        delete: 0,
                        insert: String::new(),
                    })
                    .insert
                    .extend(&b[j..j + n]);
                j += n;
            }
        }
    }
    out.extend(pending);
}

/// Applies edits to `old` (for tests and checks).
pub fn apply(old: &str, edits: &[Edit]) -> String {
    let chars: Vec<char> = old.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    for e in edits {
        out.extend(&chars[at..e.pos]);
        out.push_str(&e.insert);
        at = e.pos + e.delete;
    }
    out.extend(&chars[at..]);
    out
}

fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn common_suffix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Char ranges of the lines of `s`, each with its trailing newline.
fn lines(s: &[char]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.iter().enumerate() {
        if *c == '\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push(start..s.len());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal(usize),
    Delete(usize),
    Insert(usize),
}

/// Myers' shortest edit script, or `None` if it needs more than `max_d` edits.
fn myers<T: PartialEq>(a: &[T], b: &[T], max_d: usize) -> Option<Vec<Op>> {
    let n = a.len() as isize;
    let m = b.len() as isize;
    let limit = ((n + m) as usize).min(max_d) as isize;
    let offset = limit + 1;
    let mut v = vec![0isize; (2 * limit + 3) as usize];
    // trace[d] holds v[k] for k in -d..=d (+1 margin) as it was before round d.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'outer: for d in 0..=limit {
        let lo = (offset - d - 1).max(0) as usize;
        let hi = ((offset + d + 1) as usize).min(v.len() - 1);
        trace.push(v[lo..=hi].to_vec());
        let mut k = -d;
        while k <= d {
            let idx = (k + offset) as usize;
            let mut x = if k == -d || (k != d && v[idx - 1] < v[idx + 1]) {
                v[idx + 1]
            } else {
                v[idx - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'outer;
            }
            k += 2;
        }
    }
    let dmax = found?;
    // Walk back from (n, m), collecting single-step ops in reverse.
    let mut rev: Vec<Op> = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (0..=dmax).rev() {
        let saved = &trace[d as usize];
        let lo = (offset - d - 1).max(0);
        let get = |k: isize| saved[(k + offset - lo) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && get(k - 1) < get(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = if d == 0 { 0 } else { get(prev_k) };
        let prev_y = if d == 0 { 0 } else { prev_x - prev_k };
        while x > prev_x && y > prev_y {
            rev.push(Op::Equal(1));
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            if x == prev_x {
                rev.push(Op::Insert(1));
            } else {
                rev.push(Op::Delete(1));
            }
        }
        x = prev_x;
        y = prev_y;
    }
    // Merge runs.
    let mut ops: Vec<Op> = Vec::new();
    for op in rev.into_iter().rev() {
        match (ops.last_mut(), op) {
            (Some(Op::Equal(n)), Op::Equal(1)) => *n += 1,
            (Some(Op::Delete(n)), Op::Delete(1)) => *n += 1,
            (Some(Op::Insert(n)), Op::Insert(1)) => *n += 1,
            _ => ops.push(op),
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(old: &str, new: &str) -> Vec<Edit> {
        let edits = diff(old, new);
        assert_eq!(apply(old, &edits), new, "{old:?} -> {new:?}: {edits:?}");
        for w in edits.windows(2) {
            assert!(w[0].pos + w[0].delete <= w[1].pos, "ordered: {edits:?}");
        }
        edits
    }

    #[test]
    fn diffs_apply_back() {
        check("", "");
        check("", "hello");
        check("hello", "");
        check("abc", "abc");
        check("abc", "axc");
        check("one\ntwo\nthree\n", "one\n2\nthree\nfour\n");
        check("a\nb\nc\nd\ne\n", "e\nd\nc\nb\na\n");
        check("héllo wörld 😀\n", "hello world 😀😀\n");
        check("the quick brown fox", "the slow brown dog");
        let edits = check(
            "line one\nline two\nline three\n",
            "line one\nline 2\nline three\n",
        );
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].delete, 3, "only 'two' is replaced: {edits:?}");
    }

    #[test]
    fn random_texts_round_trip() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "ab\nc é😀".chars().collect();
        for _ in 0..500 {
            let mut make = || -> String {
                let len = next() % 60;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            };
            let a = make();
            let b = make();
            check(&a, &b);
        }
    }

    #[test]
    fn large_different_texts_fall_back_to_a_block_replace() {
        let a: String = (0..3000).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..3000).map(|i| format!("b{i}\n")).collect();
        let edits = check(&a, &b);
        assert!(!edits.is_empty());
    }
}
